import sharp from 'sharp';

const WIDTH = 640;
const HEIGHT = 480;
/** Noise at 1/16 of the output size, upscaled: smooth blobs that JPEG compresses like a photo. */
const NOISE_WIDTH = 40;
const NOISE_HEIGHT = 30;

/**
 * A 640×480 JPEG of deterministic noise whose size is as close to `targetBytes` as a quality
 * setting gets it (binary search over quality; sizes grow with quality).
 */
export async function benchJpeg(targetBytes: number): Promise<Buffer> {
  const noise = Buffer.allocUnsafe(NOISE_WIDTH * NOISE_HEIGHT * 3);
  let state = 0x2545f491;
  for (let i = 0; i < noise.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    noise[i] = state >>> 24;
  }
  const encode = (quality: number): Promise<Buffer> =>
    sharp(noise, { raw: { width: NOISE_WIDTH, height: NOISE_HEIGHT, channels: 3 } })
      .resize(WIDTH, HEIGHT, { kernel: 'cubic' })
      .jpeg({ quality })
      .toBuffer();
  let lo = 1;
  let hi = 100;
  let best = await encode(hi);
  while (lo <= hi) {
    const quality = (lo + hi) >> 1;
    const jpeg = await encode(quality);
    if (Math.abs(jpeg.length - targetBytes) < Math.abs(best.length - targetBytes)) {
      best = jpeg;
    }
    if (jpeg.length < targetBytes) {
      lo = quality + 1;
    } else {
      hi = quality - 1;
    }
  }
  return best;
}
