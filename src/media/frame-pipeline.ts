import sharp from 'sharp';

/** A frame that cannot go into the recording; the session goes on without it. */
export class BadImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadImageError';
  }
}

export interface FramePipelineOptions {
  width: number;
  height: number;
  /** Decoding refuses images with more pixels than this (decompression bombs). */
  maxInputPixels: number;
  /** Burn capture time and session id into the frame. */
  watermark: boolean;
  sessionId: string;
}

/** Output JPEG quality: the encoder re-compresses anyway; this keeps the pipe cheap and clean. */
const JPEG_QUALITY = 90;

/**
 * Turns one client image (JPEG, PNG or WebP) into a JPEG of exactly the recording size for the
 * encoder: validated, scaled with the aspect kept (black padding, lanczos3, upscaling allowed),
 * optionally watermarked. A JPEG that already has the target size goes through untouched: no
 * decode/re-encode round trip in Node, only a header check.
 */
export class FramePipeline {
  private passthroughs = 0;
  private conversions = 0;

  constructor(private readonly options: FramePipelineOptions) {}

  get stats(): { passthroughs: number; conversions: number } {
    return { passthroughs: this.passthroughs, conversions: this.conversions };
  }

  async prepare(image: Buffer, ptsMs: number): Promise<Buffer> {
    const { width, height, watermark } = this.options;
    if (!watermark) {
      const size = jpegSize(image);
      if (size && size.width === width && size.height === height) {
        this.passthroughs++;
        return image;
      }
    }
    let pipeline: sharp.Sharp;
    try {
      pipeline = sharp(image, { limitInputPixels: this.options.maxInputPixels, failOn: 'error' });
      const meta = await pipeline.metadata();
      if (!meta.width || !meta.height || !['jpeg', 'png', 'webp'].includes(meta.format ?? '')) {
        throw new BadImageError(`not a JPEG, PNG or WebP image (${meta.format ?? 'unknown'})`);
      }
      if (meta.width * meta.height > this.options.maxInputPixels) {
        throw new BadImageError(`${meta.width}×${meta.height} exceeds the pixel limit`);
      }
      pipeline = pipeline.resize(width, height, {
        fit: 'contain',
        background: { r: 0, g: 0, b: 0 },
        kernel: 'lanczos3',
      });
      if (watermark) {
        pipeline = pipeline.composite([{ input: this.watermark(ptsMs), top: 0, left: 0 }]);
      }
      const out = await pipeline
        .jpeg({ quality: JPEG_QUALITY, chromaSubsampling: '4:2:0' })
        .toBuffer();
      this.conversions++;
      return out;
    } catch (err) {
      if (err instanceof BadImageError) {
        throw err;
      }
      throw new BadImageError(`image cannot be decoded: ${(err as Error).message}`);
    }
  }

  private watermark(ptsMs: number): Buffer {
    const { width, sessionId } = this.options;
    const size = Math.max(10, Math.round(this.options.height / 30));
    const text = `${sessionId}  +${(ptsMs / 1000).toFixed(3)} s`;
    return Buffer.from(
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${size * 2}">` +
        `<rect width="100%" height="100%" fill="black" fill-opacity="0.5"/>` +
        `<text x="${size / 2}" y="${size * 1.4}" font-family="monospace" font-size="${size}" fill="white">${text}</text>` +
        `</svg>`,
    );
  }
}

/**
 * Width and height of a complete baseline/progressive JPEG from its SOF marker, or null when the
 * buffer is not a whole JPEG (no SOI, no SOF, or no EOI at the end: truncated). Never decodes.
 */
export function jpegSize(b: Buffer): { width: number; height: number } | null {
  if (
    b.length < 4 ||
    b[0] !== 0xff ||
    b[1] !== 0xd8 ||
    b[b.length - 2] !== 0xff ||
    b[b.length - 1] !== 0xd9
  ) {
    return null;
  }
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) {
      return null;
    }
    const marker = b[i + 1];
    if (marker === 0xff) {
      i++;
      continue;
    }
    const length = b.readUInt16BE(i + 2);
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: b.readUInt16BE(i + 5), width: b.readUInt16BE(i + 7) };
    }
    if (marker === 0xda || length < 2) {
      return null;
    }
    i += 2 + length;
  }
  return null;
}
