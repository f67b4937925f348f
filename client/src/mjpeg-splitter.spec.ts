import fc from 'fast-check';
import sharp from 'sharp';
import { jpegSize, MjpegSplitter } from './mjpeg-splitter';

/** A JPEG with an APP1 segment holding a fake thumbnail (its own SOI … EOI). */
function withThumbnail(jpeg: Buffer): Buffer {
  const thumbnail = Buffer.from([0xff, 0xd8, 0xff, 0xd9, 0x00, 0xff, 0xd9]);
  const app1 = Buffer.alloc(4);
  app1.writeUInt16BE(0xffe1, 0);
  app1.writeUInt16BE(2 + thumbnail.length, 2);
  return Buffer.concat([jpeg.subarray(0, 2), app1, thumbnail, jpeg.subarray(2)]);
}

describe('MjpegSplitter', () => {
  let jpegs: Buffer[];
  beforeAll(async () => {
    jpegs = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        sharp({
          create: {
            width: 64 + i * 16,
            height: 48,
            channels: 3,
            background: { r: i * 60, g: 90, b: 200 },
          },
        })
          .jpeg({ quality: 70 + i })
          .toBuffer(),
      ),
    );
    jpegs.push(withThumbnail(jpegs[0]));
  });

  it('gives back each image whole, however the stream is chunked', () => {
    const stream = Buffer.concat([Buffer.from('junk'), ...jpegs, Buffer.from([0, 0])]);
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: stream.length }), { maxLength: 20 }),
        (cuts) => {
          const splitter = new MjpegSplitter();
          const out: Buffer[] = [];
          let from = 0;
          for (const cut of [...cuts].sort((a, b) => a - b).concat(stream.length)) {
            out.push(...splitter.push(stream.subarray(from, cut)));
            from = Math.max(from, cut);
          }
          expect(out.length).toBe(jpegs.length);
          out.forEach((image, i) => expect(image.equals(jpegs[i])).toBe(true));
          expect(splitter.leftover).toBe(0);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reports an image cut off by the end of the stream as leftover', () => {
    const splitter = new MjpegSplitter();
    expect(splitter.push(Buffer.concat([jpegs[1], jpegs[2].subarray(0, 100)]))).toHaveLength(1);
    expect(splitter.leftover).toBe(100);
  });

  it('reads width and height from the SOF segment, past an APP1', () => {
    expect(jpegSize(jpegs[2])).toEqual({ width: 96, height: 48 });
    expect(jpegSize(jpegs[4])).toEqual({ width: 64, height: 48 });
    expect(jpegSize(Buffer.from([0xff, 0xd8, 0xff, 0xd9]))).toBeNull();
  });
});
