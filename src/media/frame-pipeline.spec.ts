import sharp from 'sharp';
import { BadImageError, FramePipeline, jpegSize } from './frame-pipeline';
import { ImageDecoderPool } from './image-decoder';
import { ImageWork } from './image-work';

const decoder = new ImageDecoderPool(1);
const work = new ImageWork({ concurrency: 1, budgetMsPerS: 60_000 });
afterAll(() => decoder.close());

const image = (width: number, height: number, format: 'jpeg' | 'png' | 'webp' = 'jpeg') =>
  sharp({ create: { width, height, channels: 3, background: { r: 200, g: 30, b: 90 } } })
    .toFormat(format)
    .toBuffer();

const pipeline = (over: Partial<ConstructorParameters<typeof FramePipeline>[0]> = {}) =>
  new FramePipeline({
    width: 640,
    height: 480,
    declaredWidth: 1280,
    declaredHeight: 960,
    maxScale: 2,
    maxInputPixels: 40_000_000,
    watermark: false,
    sessionId: 's-1',
    decoder,
    work: work.session(() => undefined),
    ...over,
  });

describe('jpegSize', () => {
  it('reads the size of a whole JPEG without decoding it', async () => {
    expect(jpegSize(await image(640, 480))).toEqual({ width: 640, height: 480 });
    expect(jpegSize(await image(17, 9))).toEqual({ width: 17, height: 9 });
  });

  it('refuses a truncated JPEG, a PNG and garbage', async () => {
    const jpeg = await image(640, 480);
    expect(jpegSize(jpeg.subarray(0, jpeg.length - 10))).toBeNull();
    expect(jpegSize(await image(640, 480, 'png'))).toBeNull();
    expect(jpegSize(Buffer.from([0xff, 0xd8, 0xff, 0xd9]))).toBeNull();
    expect(jpegSize(Buffer.alloc(100, 7))).toBeNull();
  });
});

describe('FramePipeline', () => {
  it('passes a JPEG of the target size through untouched', async () => {
    const p = pipeline();
    const jpeg = await image(640, 480);
    expect(await p.prepare(jpeg, 0)).toBe(jpeg);
    expect(p.stats).toEqual({ passthroughs: 1, conversions: 0 });
  });

  it.each(['png', 'webp'] as const)('converts a %s of the target size to JPEG', async (format) => {
    const out = await pipeline().prepare(await image(640, 480, format), 0);
    expect(jpegSize(out)).toEqual({ width: 640, height: 480 });
  });

  it('scales to the recording size keeping the aspect, with padding, and upscales', async () => {
    const wide = await pipeline().prepare(await image(1280, 360), 0);
    expect(jpegSize(wide)).toEqual({ width: 640, height: 480 });
    // The padding above a 640×180 picture is black.
    const { data } = await sharp(wide)
      .extract({ left: 320, top: 10, width: 1, height: 1 })
      .raw()
      .toBuffer({ resolveWithObject: true });
    expect([...data].every((v) => v < 20)).toBe(true);
    const up = await pipeline({ width: 1280, height: 960 }).prepare(await image(640, 360), 0);
    expect(jpegSize(up)).toEqual({ width: 1280, height: 960 });
  });

  it('leaves a smaller JPEG of the recording aspect to the encoder to scale, and no other', async () => {
    const p = pipeline();
    for (const [w, h] of [
      [320, 240],
      [160, 120],
      [64, 48],
    ]) {
      const jpeg = await image(w, h);
      expect(await p.prepare(jpeg, 0)).toBe(jpeg);
    }
    expect(p.stats).toEqual({ passthroughs: 3, conversions: 0 });
    // Another aspect needs padding, a larger JPEG a downscale, a PNG a decode: converted.
    for (const [w, h, format] of [
      [320, 200, 'jpeg'],
      [321, 240, 'jpeg'],
      [1280, 960, 'jpeg'],
      [320, 240, 'png'],
    ] as const) {
      expect(jpegSize(await p.prepare(await image(w, h, format), 0))).toEqual({
        width: 640,
        height: 480,
      });
    }
    expect(p.stats).toEqual({ passthroughs: 3, conversions: 4 });
    // A truncated small JPEG is not handed on: the decoder finds it broken.
    const small = await image(320, 240);
    await expect(p.prepare(small.subarray(0, small.length - 10), 0)).rejects.toThrow(
      /cannot be decoded/,
    );
  });

  it('burns in a watermark when asked, even for a JPEG of the target size', async () => {
    const p = pipeline({ watermark: true });
    const jpeg = await image(640, 480);
    const out = await p.prepare(jpeg, 12_345);
    expect(out).not.toBe(jpeg);
    expect(p.stats.conversions).toBe(1);
  });

  it('refuses garbage, a truncated JPEG and a decompression bomb with BadImageError', async () => {
    const p = pipeline({ maxInputPixels: 10_000_000 });
    await expect(p.prepare(Buffer.from('not an image at all'), 0)).rejects.toBeInstanceOf(
      BadImageError,
    );
    const jpeg = await image(800, 600);
    await expect(p.prepare(jpeg.subarray(0, 200), 0)).rejects.toThrow(/cannot be decoded/);
    const bomb = Buffer.from(await image(8, 8, 'png'));
    bomb.writeUInt32BE(2_000, 16);
    bomb.writeUInt32BE(1_500, 20);
    await expect(p.prepare(bomb, 0)).rejects.toThrow(/cannot be decoded/);
    bomb.writeUInt32BE(100_000, 16);
    await expect(p.prepare(bomb, 0)).rejects.toThrow(/exceeds this session's image limit/);
  });

  it('refuses from the header alone an image beyond the declared size times IMAGE_MAX_SCALE', async () => {
    const p = pipeline({ declaredWidth: 320, declaredHeight: 240 });
    // 640×480 is exactly twice 320×240; one pixel more in either dimension is refused.
    expect(jpegSize(await p.prepare(await image(640, 480, 'png'), 0))).toEqual({
      width: 640,
      height: 480,
    });
    for (const [w, h] of [
      [641, 240],
      [320, 481],
    ]) {
      await expect(p.prepare(await image(w, h, 'png'), 0)).rejects.toThrow(
        /exceeds this session's image limit \(640×480/,
      );
    }
    // The node-wide ceiling applies below the session's own.
    const capped = pipeline({ declaredWidth: 4000, declaredHeight: 4000, maxInputPixels: 300_000 });
    await expect(capped.prepare(await image(640, 480), 0)).rejects.toThrow(/300000 pixels/);
  });

  it('charges conversions to the session and leaves passthroughs uncharged', async () => {
    const session = work.session(() => undefined);
    const p = pipeline({ work: session });
    await p.prepare(await image(640, 480), 0);
    expect(session.averageCostMs).toBeNull();
    await p.prepare(await image(1280, 960, 'png'), 0);
    expect(session.averageCostMs).toBeGreaterThan(0);
    await expect(p.decodes(await image(640, 480))).resolves.toBe(true);
    const broken = Buffer.from(await image(640, 480));
    broken.fill(0x55, 600, broken.length - 2);
    await expect(p.decodes(broken)).resolves.toBe(false);
  });
});
