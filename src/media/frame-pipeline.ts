import { type ImageDecoder, ImageDecodeError } from './image-decoder';
import { imageHeader } from './image-header';
import type { SessionImageWork } from './image-work';

/** A frame that cannot go into the recording; the session goes on without it. */
export class BadImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadImageError';
  }
}

export interface FramePipelineOptions {
  /** Recording size. */
  width: number;
  height: number;
  /** The video size the session declared in `open`. */
  declaredWidth: number;
  declaredHeight: number;
  /**
   * An image may be at most this many times the declared size in each dimension (IMAGE_MAX_SCALE):
   * what a session costs to decode follows what it declared, not a node-wide figure.
   */
  maxScale: number;
  /** Node-wide ceiling on the pixels of any image (RECORDING_MAX_INPUT_PIXELS). */
  maxInputPixels: number;
  /** Burn capture time and session id into the frame. */
  watermark: boolean;
  sessionId: string;
  /** Decodes images out of the service's process. */
  decoder: ImageDecoder;
  /** The session's slot in the node's image queue, and its budget. */
  work: SessionImageWork;
}

/** Output JPEG quality: the encoder re-compresses anyway; this keeps the pipe cheap and clean. */
const JPEG_QUALITY = 90;

/**
 * Whether the encoder can take a JPEG of this size as it is: the recording size, or smaller with
 * the same aspect. ffmpeg's scaler (the encoder's `-s`) then scales it up exactly as a conversion
 * would (no padding needed), for a fraction of the cost: no decode, resize and JPEG encode in a
 * decoder process, and a smaller JPEG to decode in the encoder. A larger JPEG is not taken: its
 * decode would cost the encoder more than the recording size the session is weighed by.
 */
function encoderScales(
  size: { width: number; height: number },
  width: number,
  height: number,
): boolean {
  return size.width > 0 && size.width <= width && size.width * height === size.height * width;
}

/**
 * Turns one client image (JPEG, PNG or WebP) into a JPEG the encoder takes: validated, scaled to
 * the recording size with the aspect kept (black padding, lanczos3, upscaling allowed), optionally
 * watermarked. Sizes are checked from the header before anything is decoded: an image larger than
 * the session's limit is refused at once. A JPEG of the recording size, or smaller with its aspect
 * (`encoderScales`), goes to the encoder untouched, which scales it; any other image goes through
 * the node's image queue to a decoder process, charged to the session's budget.
 */
export class FramePipeline {
  private passthroughs = 0;
  private conversions = 0;
  /** The session's image size limits. */
  readonly maxWidth: number;
  readonly maxHeight: number;
  readonly maxPixels: number;

  constructor(private readonly options: FramePipelineOptions) {
    this.maxWidth = Math.floor(options.declaredWidth * options.maxScale);
    this.maxHeight = Math.floor(options.declaredHeight * options.maxScale);
    this.maxPixels = Math.min(this.maxWidth * this.maxHeight, options.maxInputPixels);
  }

  get stats(): { passthroughs: number; conversions: number } {
    return { passthroughs: this.passthroughs, conversions: this.conversions };
  }

  async prepare(image: Buffer, ptsMs: number): Promise<Buffer> {
    const { width, height, watermark } = this.options;
    const header = imageHeader(image);
    if (!header) {
      throw new BadImageError('not a JPEG, PNG or WebP image');
    }
    if (
      header.width > this.maxWidth ||
      header.height > this.maxHeight ||
      header.width * header.height > this.maxPixels
    ) {
      throw new BadImageError(
        `${header.width}×${header.height} exceeds this session's image limit ` +
          `(${this.maxWidth}×${this.maxHeight}, ${this.maxPixels} pixels)`,
      );
    }
    if (
      !watermark &&
      header.format === 'jpeg' &&
      encoderScales(header, width, height) &&
      endsLikeJpeg(image)
    ) {
      this.passthroughs++;
      return image;
    }
    const task = {
      input: image,
      width,
      height,
      maxInputPixels: this.maxPixels,
      overlay: watermark ? this.watermark(ptsMs) : null,
      quality: JPEG_QUALITY,
    };
    let out: Buffer;
    try {
      out = (await this.options.work.run(() => this.options.decoder.convert(task))).jpeg;
    } catch (err) {
      if (err instanceof ImageDecodeError) {
        throw new BadImageError(err.message);
      }
      throw err;
    }
    this.conversions++;
    return out;
  }

  /**
   * Full decode of a JPEG already given to the encoder: whether ffmpeg can read it. Only after an
   * encoder failed; charged to the session like any image work.
   */
  async decodes(jpeg: Buffer): Promise<boolean> {
    return (await this.options.work.run(() => this.options.decoder.decodes(jpeg, this.maxPixels)))
      .ok;
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
  if (!endsLikeJpeg(b)) {
    return null;
  }
  const header = imageHeader(b);
  return header?.format === 'jpeg' ? { width: header.width, height: header.height } : null;
}

/** Whether the buffer ends with a JPEG's EOI marker: a JPEG cut short does not. */
function endsLikeJpeg(b: Buffer): boolean {
  return b.length >= 4 && b[b.length - 2] === 0xff && b[b.length - 1] === 0xd9;
}
