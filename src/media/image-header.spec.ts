import sharp from 'sharp';
import { imageHeader } from './image-header';

const image = (
  width: number,
  height: number,
  format: 'jpeg' | 'png' | 'webp',
  options: sharp.WebpOptions = {},
) =>
  sharp({ create: { width, height, channels: 3, background: { r: 200, g: 30, b: 90 } } })
    .toFormat(format, options)
    .toBuffer();

describe('imageHeader', () => {
  it.each([
    ['jpeg', {}],
    ['png', {}],
    ['webp', {}],
    ['webp', { lossless: true }],
  ] as const)('reads format and size of a %s %j from its header', async (format, options) => {
    expect(imageHeader(await image(123, 45, format, options))).toEqual({
      format,
      width: 123,
      height: 45,
    });
  });

  it('reads the extended (VP8X) WebP canvas size', async () => {
    const webp = await sharp({
      create: {
        width: 300,
        height: 200,
        channels: 4,
        background: { r: 0, g: 0, b: 0, alpha: 0.5 },
      },
    })
      .webp()
      .withMetadata()
      .toBuffer();
    expect(webp.toString('latin1', 12, 16)).toBe('VP8X');
    expect(imageHeader(webp)).toEqual({ format: 'webp', width: 300, height: 200 });
  });

  it('reads the size a header declares, whatever data follows (a bomb is refused unread)', async () => {
    const bomb = Buffer.from(await image(8, 8, 'png'));
    bomb.writeUInt32BE(100_000, 16);
    bomb.writeUInt32BE(90_000, 20);
    expect(imageHeader(bomb)).toEqual({ format: 'png', width: 100_000, height: 90_000 });
    // A JPEG cut right after its frame header still tells its size.
    const jpeg = await image(640, 480, 'jpeg');
    expect(imageHeader(jpeg.subarray(0, jpeg.indexOf(Buffer.from([0xff, 0xc0])) + 12))).toEqual({
      format: 'jpeg',
      width: 640,
      height: 480,
    });
  });

  it('refuses other formats, garbage and headers cut short', async () => {
    expect(imageHeader(Buffer.from('not an image at all, not at all'))).toBeNull();
    expect(
      imageHeader(
        await sharp(await image(20, 20, 'png'))
          .gif()
          .toBuffer(),
      ),
    ).toBeNull();
    expect(imageHeader(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toBeNull();
    expect(imageHeader((await image(20, 20, 'png')).subarray(0, 20))).toBeNull();
    expect(imageHeader((await image(20, 20, 'jpeg')).subarray(0, 30))).toBeNull();
    expect(imageHeader((await image(20, 20, 'webp')).subarray(0, 24))).toBeNull();
    expect(imageHeader(Buffer.from([0xff, 0xd8, 0xff, 0xd9, 0, 0, 0, 0, 0, 0, 0, 0]))).toBeNull();
  });
});
