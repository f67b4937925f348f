import sharp from 'sharp';
import { encodeMediaMessage, MEDIA_HEADER_BYTES, Track } from '../../src/protocol/media-header';

export const FRAME_WIDTH = 640;
export const FRAME_HEIGHT = 480;
/** A random field this small, upscaled this much: smooth blobs that JPEG compresses like a photo. */
const FIELD_WIDTH = 64;
const FIELD_HEIGHT = 48;
const FIELD_SCALE = 24;
/** Sensor-like grain, ± half of this per channel, different in every frame. */
const GRAIN = 8;

export interface BenchFrames {
  jpegs: Buffer[];
  quality: number;
  meanBytes: number;
  minBytes: number;
  maxBytes: number;
}

/**
 * `count` distinct 640×480 JPEGs of a camera panning over a textured scene, with grain: what
 * follows one from the other is motion, as from a real camera, so x264 works as it would on one.
 * The pan is a closed loop, so cycling through the frames has no cut. One JPEG quality for all,
 * chosen so the mean size is as close to `targetBytes` as a quality step gets.
 */
export async function recordingFrames(count: number, targetBytes: number): Promise<BenchFrames> {
  let state = 0x2545f491;
  const random = (): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state >>> 24;
  };
  const field = Buffer.allocUnsafe(FIELD_WIDTH * FIELD_HEIGHT * 3);
  for (let i = 0; i < field.length; i++) {
    field[i] = random();
  }
  const sceneWidth = FIELD_WIDTH * FIELD_SCALE;
  const sceneHeight = FIELD_HEIGHT * FIELD_SCALE;
  const scene = await sharp(field, {
    raw: { width: FIELD_WIDTH, height: FIELD_HEIGHT, channels: 3 },
  })
    .resize(sceneWidth, sceneHeight, { kernel: 'cubic' })
    .raw()
    .toBuffer();
  const row = FRAME_WIDTH * 3;
  const marginX = (sceneWidth - FRAME_WIDTH) / 2;
  const marginY = (sceneHeight - FRAME_HEIGHT) / 2;
  const raws = Array.from({ length: count }, (_, f) => {
    const angle = (2 * Math.PI * f) / count;
    const x = Math.round(marginX + marginX * 0.8 * Math.cos(angle));
    const y = Math.round(marginY + marginY * 0.8 * Math.sin(angle));
    const raw = Buffer.allocUnsafe(row * FRAME_HEIGHT);
    for (let line = 0; line < FRAME_HEIGHT; line++) {
      const from = ((y + line) * sceneWidth + x) * 3;
      scene.copy(raw, line * row, from, from + row);
    }
    for (let i = 0; i < raw.length; i++) {
      const v = raw[i] + ((random() * GRAIN) >> 8) - (GRAIN >> 1);
      raw[i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    return raw;
  });
  const encode = (raw: Buffer, quality: number): Promise<Buffer> =>
    sharp(raw, { raw: { width: FRAME_WIDTH, height: FRAME_HEIGHT, channels: 3 } })
      .jpeg({ quality, chromaSubsampling: '4:2:0' })
      .toBuffer();
  // Sizes grow with quality: binary search on a sample of the frames.
  const sample = raws.filter((_, i) => i % Math.max(1, Math.floor(count / 5)) === 0);
  const meanAt = async (quality: number): Promise<number> =>
    mean((await Promise.all(sample.map((raw) => encode(raw, quality)))).map((j) => j.length));
  let lo = 1;
  let hi = 100;
  let best = { quality: hi, bytes: await meanAt(hi) };
  while (lo <= hi) {
    const quality = (lo + hi) >> 1;
    const bytes = await meanAt(quality);
    if (Math.abs(bytes - targetBytes) < Math.abs(best.bytes - targetBytes)) {
      best = { quality, bytes };
    }
    if (bytes < targetBytes) {
      lo = quality + 1;
    } else {
      hi = quality - 1;
    }
  }
  const jpegs = await Promise.all(raws.map((raw) => encode(raw, best.quality)));
  const sizes = jpegs.map((j) => j.length);
  return {
    jpegs,
    quality: best.quality,
    meanBytes: Math.round(mean(sizes)),
    minBytes: Math.min(...sizes),
    maxBytes: Math.max(...sizes),
  };
}

/**
 * One media message per JPEG, built once; `frame()` writes a seq and pts into one and returns it.
 * Safe to share among clients because `ws` masks a client's outgoing Buffer into a new buffer
 * inside `send()` (its "merge" path for read-only data): once `send()` returns, the message may be
 * rewritten for the next frame. So the only per-frame allocation is the one `ws` makes anyway.
 */
export class FramePool {
  private readonly messages: Buffer[];

  constructor(readonly jpegs: Buffer[]) {
    this.messages = jpegs.map((jpeg) => encodeMediaMessage(Track.Video, 1, 0, jpeg));
  }

  get size(): number {
    return this.messages.length;
  }

  /** The message of JPEG `index % size` with this seq and pts; send it before the next call. */
  frame(index: number, seq: number, ptsMs: number): Buffer {
    const message = this.messages[index % this.messages.length];
    message.writeUInt32BE(seq, 4);
    message.writeUInt32BE(ptsMs >>> 0, 8);
    return message;
  }

  /** The JPEG of message `index % size` (what the message at that index carries). */
  jpeg(index: number): Buffer {
    return this.messages[index % this.messages.length].subarray(MEDIA_HEADER_BYTES);
  }
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
}
