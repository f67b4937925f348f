const MARKER = 0xff;
const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;

/** Markers without a length field: RSTn and TEM. */
function standalone(marker: number): boolean {
  return (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01;
}

/**
 * Splits an MJPEG byte stream (e.g. `ffmpeg -f mjpeg -`) into JPEG images. It walks the marker
 * segments by their lengths, so that an EXIF thumbnail's own SOI/EOI inside APP1 does not end a
 * frame, and scans entropy-coded data for the next marker (0xFF00 is a stuffed byte, RSTn are not
 * markers that end it). Bytes between images (garbage, padding) are skipped.
 */
export class MjpegSplitter {
  private buf = Buffer.alloc(0);
  /** Offset of the current image's SOI, or -1 while looking for one. */
  private start = -1;
  private pos = 0;
  private inScan = false;

  /** Feeds a chunk; returns the images it completed. */
  push(chunk: Uint8Array): Buffer[] {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    const images: Buffer[] = [];
    for (;;) {
      const image = this.step();
      if (image === null) {
        break;
      }
      if (image !== 'progress') {
        images.push(image);
      }
    }
    return images;
  }

  /** Bytes of an unfinished image at the end of the stream (0 when it ended cleanly). */
  get leftover(): number {
    return this.start < 0 ? 0 : this.buf.length - this.start;
  }

  /** One move: an image, some progress, or null when more data is needed. */
  private step(): Buffer | 'progress' | null {
    const buf = this.buf;
    if (this.start < 0) {
      for (let i = this.pos; i + 1 < buf.length; i++) {
        if (buf[i] === MARKER && buf[i + 1] === SOI) {
          this.buf = buf.subarray(i);
          this.start = 0;
          this.pos = 2;
          this.inScan = false;
          return 'progress';
        }
      }
      // Keep a last 0xFF: it may begin the next SOI.
      this.buf =
        buf.length > 0 && buf[buf.length - 1] === MARKER
          ? buf.subarray(buf.length - 1)
          : Buffer.alloc(0);
      this.pos = 0;
      return null;
    }
    if (this.inScan) {
      for (let i = this.pos; i + 1 < buf.length; i++) {
        const next = buf[i + 1];
        if (buf[i] === MARKER && next !== 0 && next !== MARKER && !standalone(next)) {
          this.pos = i;
          this.inScan = false;
          return 'progress';
        }
      }
      this.pos = Math.max(this.pos, buf.length - 1);
      return null;
    }
    if (this.pos + 2 > buf.length) {
      return null;
    }
    if (buf[this.pos] !== MARKER) {
      // Not a JPEG after all (or corrupt): look for the next SOI after this one.
      this.start = -1;
      this.pos = 1;
      return 'progress';
    }
    const marker = buf[this.pos + 1];
    if (marker === MARKER) {
      this.pos++; // fill byte
      return 'progress';
    }
    if (marker === EOI) {
      const end = this.pos + 2;
      const image = Buffer.from(buf.subarray(this.start, end));
      this.buf = buf.subarray(end);
      this.start = -1;
      this.pos = 0;
      return image;
    }
    if (standalone(marker) || marker === SOI) {
      this.pos += 2;
      return 'progress';
    }
    if (this.pos + 4 > buf.length) {
      return null;
    }
    const length = buf.readUInt16BE(this.pos + 2);
    if (this.pos + 2 + length > buf.length) {
      return null;
    }
    this.pos += 2 + length;
    this.inScan = marker === SOS;
    return 'progress';
  }
}

/** Width and height from a JPEG's SOFn segment, or null when it has none. */
export function jpegSize(jpeg: Uint8Array): { width: number; height: number } | null {
  const b = Buffer.from(jpeg.buffer, jpeg.byteOffset, jpeg.byteLength);
  let pos = 2;
  while (pos + 4 <= b.length) {
    if (b[pos] !== MARKER) {
      return null;
    }
    const marker = b[pos + 1];
    if (marker === MARKER) {
      pos++;
      continue;
    }
    if (standalone(marker)) {
      pos += 2;
      continue;
    }
    const length = b.readUInt16BE(pos + 2);
    const isSof =
      marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof && pos + 9 <= b.length) {
      return { height: b.readUInt16BE(pos + 5), width: b.readUInt16BE(pos + 7) };
    }
    if (marker === SOS || marker === EOI) {
      return null;
    }
    pos += 2 + length;
  }
  return null;
}
