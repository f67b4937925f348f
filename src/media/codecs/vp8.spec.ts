import fc from 'fast-check';
import type { VideoChunkCheck } from '../../stream/chunk-gate';
import { encodeVpx, type IvfFrame } from '../../../test/support/bitstreams';
import { createVp8Checker } from './vp8';

const QVGA = { width: 320, height: 240 };
const LIMITS = { maxWidth: 1920, maxHeight: 1080 };
const VP8 = ['-c:v', 'libvpx', '-g', '10', '-b:v', '300k'];

/** The frame tag's key bit (RFC 6386 §9.1: 0 is a key frame). */
const isKey = (frame: Buffer) => (frame[0] & 1) === 0;
const isShown = (frame: Buffer) => (frame[0] & 0x10) !== 0;

describe('createVp8Checker', () => {
  let frames: IvfFrame[];
  let twoPass: IvfFrame[];
  let vga: IvfFrame[];
  let checker: VideoChunkCheck;
  let key: Buffer;
  let delta: Buffer;

  beforeAll(async () => {
    const [one, two, big] = await Promise.all([
      encodeVpx({ ...QVGA, frames: 30 }, VP8),
      encodeVpx({ ...QVGA, frames: 30 }, VP8, true),
      encodeVpx({ width: 640, height: 480, frames: 2 }, VP8),
    ]);
    expect(one.fourcc).toBe('VP80');
    [frames, twoPass, vga] = [one.frames, two.frames, big.frames];
    checker = createVp8Checker({ ...QVGA, ...LIMITS });
    key = frames[0].data;
    delta = frames[1].data;
  });

  it('accepts every libvpx frame with its true key flag, and refuses the flipped flag', () => {
    expect(frames).toHaveLength(30);
    expect(frames.map((f) => isKey(f.data))).toEqual(frames.map((_, i) => i % 10 === 0));
    for (const { data } of frames) {
      expect(checker.check(data, isKey(data))).toBeNull();
      expect(checker.check(data, !isKey(data))).toBe(
        isKey(data)
          ? 'the chunk is a VP8 key frame but is not flagged key'
          : 'flagged key, but the chunk is a VP8 inter frame',
      );
    }
  });

  it('refuses the hidden alt-ref frames of a two-pass encode and accepts its shown frames', () => {
    const hidden = twoPass.filter((f) => !isShown(f.data));
    expect(hidden.length).toBeGreaterThan(0);
    for (const { data } of twoPass) {
      expect(checker.check(data, isKey(data))).toBe(
        isShown(data)
          ? null
          : 'the VP8 frame is not shown (show_frame 0): a chunk is one displayed frame',
      );
    }
  });

  it('takes a key frame of another size within the limit, and refuses one over it', () => {
    expect(checker.check(vga[0].data, true)).toBeNull();
    expect(checker.check(vga[1].data, false)).toBeNull();
    const small = createVp8Checker({ ...QVGA, maxWidth: 600, maxHeight: 1080 });
    expect(small.check(vga[0].data, true)).toBe(
      'a VP8 key frame of 640x480 is over the limit of 600x1080',
    );
    expect(small.check(vga[1].data, false)).toBeNull();
  });

  it('reads the size without the scaling bits', () => {
    const scaled = Buffer.from(key);
    scaled[7] |= 0xc0;
    scaled[9] |= 0x40;
    expect(checker.check(scaled, true)).toBeNull();
    const tight = createVp8Checker({ ...QVGA, maxWidth: 320, maxHeight: 240 });
    expect(tight.check(scaled, true)).toBeNull();
  });

  it('refuses chunks too short for a frame tag or a key frame header', () => {
    expect(checker.check(Buffer.alloc(0), false)).toBe(
      'a VP8 frame has at least 3 bytes; the chunk has 0',
    );
    expect(checker.check(delta.subarray(0, 2), false)).toBe(
      'a VP8 frame has at least 3 bytes; the chunk has 2',
    );
    expect(checker.check(key.subarray(0, 9), true)).toBe(
      'a VP8 key frame has at least 10 bytes; the chunk has 9',
    );
  });

  it('refuses a first partition that does not fit the chunk, or is empty', () => {
    const firstPartition = (delta[0] | (delta[1] << 8) | (delta[2] << 16)) >>> 5;
    const cut = delta.subarray(0, 3 + firstPartition - 1);
    expect(checker.check(cut, false)).toBe(
      `VP8 first partition size ${firstPartition} does not fit the chunk (${cut.length} bytes)`,
    );
    expect(checker.check(delta.subarray(0, 3 + firstPartition), false)).toBeNull();
    const empty = Buffer.from(delta);
    empty[0] &= 0x1f;
    empty[1] = 0;
    empty[2] = 0;
    expect(checker.check(empty, false)).toBe(
      `VP8 first partition size 0 does not fit the chunk (${delta.length} bytes)`,
    );
  });

  it('refuses a key frame without its start code, of size 0, or of an undefined version', () => {
    const noStart = Buffer.from(key);
    noStart[4] = 0x02;
    expect(checker.check(noStart, true)).toBe('the VP8 key frame lacks its start code 9d 01 2a');
    const zero = Buffer.from(key);
    zero[6] = 0;
    zero[7] = 0;
    expect(checker.check(zero, true)).toBe('a VP8 key frame of 0x240');
    for (const version of [4, 7]) {
      const odd = Buffer.from(key);
      odd[0] = (odd[0] & ~0x0e) | (version << 1);
      expect(checker.check(odd, true)).toBe(`VP8 version ${version} is not defined (0 to 3)`);
    }
  });

  it('throws at construction for an empty size or one over the limit', () => {
    expect(() => createVp8Checker({ width: 0, height: 240, ...LIMITS })).toThrow(
      'a VP8 size of 0x240 is empty',
    );
    expect(() => createVp8Checker({ width: 2000, height: 240, ...LIMITS })).toThrow(
      '2000x240 is over the limit of 1920x1080',
    );
  });

  it('answers every prefix of a frame without throwing, refusing those short of the first partition', () => {
    for (const frame of [key, delta]) {
      const header = isKey(frame) ? 10 : 3;
      const firstPartition = (frame[0] | (frame[1] << 8) | (frame[2] << 16)) >>> 5;
      for (let n = 0; n <= frame.length; n++) {
        const verdict = checker.check(frame.subarray(0, n), isKey(frame));
        if (n < header + firstPartition) {
          expect(typeof verdict).toBe('string');
        } else {
          expect(verdict).toBeNull();
        }
      }
    }
  });

  it('answers arbitrary bytes with a string or null, never an exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, flag) => {
        const verdict = checker.check(Buffer.from(bytes), flag);
        return verdict === null || typeof verdict === 'string';
      }),
      { numRuns: 2000 },
    );
  });
});
