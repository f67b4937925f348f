/** The formats a client image may have, and the size its header declares. */
export interface ImageHeader {
  format: 'jpeg' | 'png' | 'webp';
  width: number;
  height: number;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Format and size of a JPEG, PNG or WebP image from its header alone: a few bytes read on the
 * event loop, no decoder, no thread. Null when the buffer is none of the three or its header is
 * cut short. A header can lie about the data behind it; the decoder's own pixel limit catches
 * that, this only refuses what is too big before any decoding starts.
 */
export function imageHeader(b: Buffer): ImageHeader | null {
  if (b.length >= 24 && b.subarray(0, 8).equals(PNG_SIGNATURE)) {
    // The first chunk must be IHDR: width and height as 32-bit big-endian numbers.
    if (b.toString('latin1', 12, 16) !== 'IHDR') {
      return null;
    }
    return { format: 'png', width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    return jpegHeader(b);
  }
  if (
    b.length >= 30 &&
    b.toString('latin1', 0, 4) === 'RIFF' &&
    b.toString('latin1', 8, 12) === 'WEBP'
  ) {
    return webpHeader(b);
  }
  return null;
}

/** Walks the marker segments after SOI up to the first frame header (SOFn). */
function jpegHeader(b: Buffer): ImageHeader | null {
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) {
      return null;
    }
    const marker = b[i + 1];
    if (marker === 0xff) {
      // Fill byte before a marker.
      i++;
      continue;
    }
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { format: 'jpeg', height: b.readUInt16BE(i + 5), width: b.readUInt16BE(i + 7) };
    }
    const length = b.readUInt16BE(i + 2);
    if (marker === 0xda || marker === 0xd9 || length < 2) {
      // Scan data or the end before any frame header.
      return null;
    }
    i += 2 + length;
  }
  return null;
}

/** The size in the first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended canvas). */
function webpHeader(b: Buffer): ImageHeader | null {
  const chunk = b.toString('latin1', 12, 16);
  if (chunk === 'VP8 ') {
    // Frame tag (3 bytes), then the start code 9d 01 2a and two 14-bit sizes.
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) {
      return null;
    }
    return {
      format: 'webp',
      width: b.readUInt16LE(26) & 0x3fff,
      height: b.readUInt16LE(28) & 0x3fff,
    };
  }
  if (chunk === 'VP8L') {
    if (b[20] !== 0x2f) {
      return null;
    }
    const bits = b.readUInt32LE(21);
    return { format: 'webp', width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8X') {
    return { format: 'webp', width: b.readUIntLE(24, 3) + 1, height: b.readUIntLE(27, 3) + 1 };
  }
  return null;
}
