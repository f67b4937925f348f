import fc from 'fast-check';
import sharp from 'sharp';
import { locateTool } from './ffmpeg-locator';
import { AccessUnitSplitter, avcCodecString, isKeyframe } from './h264-stream';
import { VideoEncoderProcess } from './video-encoder';

/** Compared by bytes: jest's toEqual walks a Buffer element by element, far too slowly here. */
function same(actual: Buffer[], expected: Buffer[]): boolean {
  return actual.length === expected.length && actual.every((au, i) => au.equals(expected[i]));
}

function split(stream: Buffer, cuts: number[]): Buffer[] {
  const aus: Buffer[] = [];
  const splitter = new AccessUnitSplitter((au) => aus.push(au));
  let from = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
    splitter.push(stream.subarray(from, cut));
    from = cut;
  }
  splitter.push(stream.subarray(from));
  const last = splitter.flush();
  if (last) {
    aus.push(last);
  }
  return aus;
}

const nal = (startCode: number[], type: number, ...payload: number[]) =>
  Buffer.from([...startCode, type, ...payload]);
const LONG = [0, 0, 0, 1];
const SHORT = [0, 0, 1];

describe('AccessUnitSplitter', () => {
  // AUD, SPS (High, level 3.0), IDR | AUD, slice | AUD, slice with a 3-byte start code
  const first = Buffer.concat([
    nal(LONG, 0x09, 0xf0),
    nal(LONG, 0x67, 0x64, 0x00, 0x1e, 0xac),
    nal(SHORT, 0x65, 0x88, 0x84),
  ]);
  const second = Buffer.concat([nal(LONG, 0x09, 0xf0), nal(SHORT, 0x41, 0x9a, 0x00, 0x02)]);
  const third = Buffer.concat([nal(LONG, 0x09, 0xf0), nal(SHORT, 0x41, 0x9a, 0x11)]);
  const stream = Buffer.concat([first, second, third]);

  it('cuts before each access unit delimiter, keeping its 4-byte start code', () => {
    expect(split(stream, [])).toEqual([first, second, third]);
  });

  it('gives the same access units for any chunking, even inside a start code', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length - 1 })), (cuts) => {
        expect(same(split(stream, cuts), [first, second, third])).toBe(true);
      }),
    );
  });

  it('holds the last access unit until flush', () => {
    const aus: Buffer[] = [];
    const splitter = new AccessUnitSplitter((au) => aus.push(au));
    splitter.push(Buffer.concat([first, second]));
    expect(aus).toEqual([first]);
    expect(splitter.flush()).toEqual(second);
    expect(splitter.flush()).toBeNull();
  });

  it('grows past its initial buffer for a large access unit fed in small chunks', () => {
    const big = Buffer.concat([nal(LONG, 0x09, 0xf0), nal(SHORT, 0x65), Buffer.alloc(700_000, 7)]);
    const cuts = Array.from({ length: 100 }, (_, i) => (i + 1) * 7_001);
    expect(same(split(Buffer.concat([big, second]), cuts), [big, second])).toBe(true);
  });

  it('reads the keyframe flag and the codec string from the NAL headers', () => {
    expect(isKeyframe(first)).toBe(true);
    expect(isKeyframe(second)).toBe(false);
    expect(avcCodecString(first)).toBe('avc1.64001e');
    expect(avcCodecString(second)).toBeNull();
  });
});

describe('AccessUnitSplitter on real encoder output', () => {
  let aus: Buffer[];

  beforeAll(async () => {
    // A pattern drifting a little each frame: motion, but never a scene cut (an extra keyframe).
    const frames = await Promise.all(
      Array.from({ length: 110 }, (_, i) => {
        const raw = Buffer.alloc(320 * 240 * 3);
        for (let p = 0; p < 320 * 240; p++) {
          const x = p % 320;
          const y = Math.floor(p / 320);
          raw[p * 3] = (x + i * 3) & 0xff;
          raw[p * 3 + 1] = (y * 2 + i) & 0xff;
          raw[p * 3 + 2] = ((x ^ y) + i * 2) & 0xff;
        }
        return sharp(raw, { raw: { width: 320, height: 240, channels: 3 } })
          .jpeg()
          .toBuffer();
      }),
    );
    aus = [];
    const encoder = new VideoEncoderProcess(locateTool('ffmpeg', process.env.FFMPEG_PATH).path);
    encoder.start({
      width: 320,
      height: 240,
      fps: 10,
      preset: 'superfast',
      crf: 30,
      onAccessUnit: (au) => aus.push(au),
    });
    for (const frame of frames) {
      if (!encoder.write(frame)) {
        await encoder.drained();
      }
    }
    await encoder.end();
  });

  it('gives one access unit per JPEG with a keyframe every five seconds of frames', () => {
    expect(aus).toHaveLength(110);
    expect(aus.map((au, i) => (isKeyframe(au) ? i : -1)).filter((i) => i >= 0)).toEqual([
      0, 50, 100,
    ]);
  });

  it('reads an H.264 High profile codec string from the first access unit only', () => {
    expect(avcCodecString(aus[0])).toMatch(/^avc1\.64[0-9a-f]{4}$/);
    expect(avcCodecString(aus[1])).toBeNull();
  });

  it('gives the same access units when the stream is re-split at arbitrary points', () => {
    const stream = Buffer.concat(aus);
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 200 }),
        (cuts) => {
          expect(same(split(stream, cuts), aus)).toBe(true);
        },
      ),
      { numRuns: 50 },
    );
  });
});
