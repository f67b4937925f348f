import fc from 'fast-check';
import type { VideoChunkCheck } from '../../stream/chunk-gate';
import { encodeVpx, type IvfFrame } from '../../../test/support/bitstreams';
import { createVp9Checker, type Vp9CheckerOptions } from './vp9';

const QVGA = { width: 320, height: 240 };
const LIMITS = { maxWidth: 1920, maxHeight: 1080 };
const VP9 = ['-c:v', 'libvpx-vp9', '-g', '10', '-b:v', '300k'];
const SYNC = '010010011000001101000010';

function checkerFor(codec: string, change: Partial<Vp9CheckerOptions> = {}): VideoChunkCheck {
  return createVp9Checker({ codec, ...QVGA, ...LIMITS, ...change });
}

/** Bytes from a string of bits (spaces ignored), padded with zeros to a whole byte. */
function bits(text: string): Buffer {
  const b = text.replace(/ /g, '');
  const padded = b.padEnd(Math.ceil(b.length / 8) * 8, '0');
  return Buffer.from((padded.match(/.{8}/g) ?? []).map((byte) => parseInt(byte, 2)));
}

/** A superframe (VP9 Annex B): the frames, then marker, little-endian sizes, marker. */
function superframe(frames: Buffer[], sizeBytes = 4): Buffer {
  const marker = 0xc0 | ((sizeBytes - 1) << 3) | (frames.length - 1);
  const index = Buffer.alloc(2 + sizeBytes * frames.length);
  index[0] = marker;
  frames.forEach((f, i) => index.writeUIntLE(f.length, 1 + i * sizeBytes, sizeBytes));
  index[index.length - 1] = marker;
  return Buffer.concat([...frames, index]);
}

/** The frames of a chunk: a superframe's, or the chunk itself. */
function framesOf(chunk: Buffer): Buffer[] {
  const marker = chunk[chunk.length - 1];
  const count = (marker & 7) + 1;
  const sizeBytes = ((marker >> 3) & 3) + 1;
  const indexBytes = 2 + count * sizeBytes;
  if ((marker & 0xe0) !== 0xc0 || chunk[chunk.length - indexBytes] !== marker) {
    return [chunk];
  }
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const size = chunk.readUIntLE(chunk.length - indexBytes + 1 + i * sizeBytes, sizeBytes);
    out.push(chunk.subarray(at, at + size));
    at += size;
  }
  return out;
}

/**
 * Key flag of a chunk from its frames' first byte (profile 0-2: frame_marker, two profile bits,
 * show_existing_frame, frame_type): a key frame is 0 in bit 2 and 0 in bit 3.
 */
const hasKeyFrame = (chunk: Buffer) => framesOf(chunk).some((f) => (f[0] & 0x0c) === 0);

/** A show_existing_frame frame of profile 0 (showing slot 0): 10 00 1 000. */
const SHOW_EXISTING = Buffer.from([0x88]);

describe('createVp9Checker', () => {
  let profile0: IvfFrame[];
  let twoPass: IvfFrame[];
  let vga: IvfFrame[];
  let key: Buffer;
  let delta: Buffer;

  beforeAll(async () => {
    const [one, two, big] = await Promise.all([
      encodeVpx({ ...QVGA, frames: 30 }, VP9),
      encodeVpx({ ...QVGA, frames: 30 }, VP9, true),
      encodeVpx({ width: 640, height: 480, frames: 2 }, VP9),
    ]);
    expect(one.fourcc).toBe('VP90');
    [profile0, twoPass, vga] = [one.frames, two.frames, big.frames];
    key = profile0[0].data;
    delta = profile0[1].data;
  });

  it.each([
    ['profile 0', 'vp09.00.10.08', []],
    ['profile 1 (4:4:4)', 'vp09.01.10.08', ['-pix_fmt', 'yuv444p']],
    ['profile 1 (RGB)', 'vp09.01.10.08', ['-pix_fmt', 'gbrp']],
    ['profile 2 (10-bit)', 'vp09.02.10.10', ['-pix_fmt', 'yuv420p10le']],
    ['profile 2 (12-bit)', 'vp09.02.10.12.01.01.01.01.00', ['-pix_fmt', 'yuv420p12le']],
    ['profile 3 (4:4:4 10-bit)', 'vp09.03.10.10', ['-pix_fmt', 'yuv444p10le']],
  ])(
    'accepts every libvpx %s frame with its true key flag, and refuses the flipped flag',
    async (_name, codec, extra) => {
      const { frames } = await encodeVpx({ ...QVGA, frames: 12 }, [...VP9, ...extra]);
      const checker = checkerFor(codec);
      const keys = frames.map((_, i) => i % 10 === 0);
      expect(frames.map((f, i) => checker.check(f.data, keys[i]))).toEqual(frames.map(() => null));
      for (const [i, { data }] of frames.entries()) {
        expect(checker.check(data, !keys[i])).toBe(
          keys[i]
            ? 'the chunk holds a VP9 key frame but is not flagged key'
            : 'flagged key, but the chunk holds no VP9 key frame',
        );
      }
    },
  );

  it('accepts the superframes of a two-pass encode (a hidden alt-ref frame, then a shown one)', () => {
    const checker = checkerFor('vp09.00.10.08');
    const supers = twoPass.filter((f) => framesOf(f.data).length > 1);
    expect(supers.length).toBeGreaterThan(0);
    for (const { data } of twoPass) {
      expect(checker.check(data, hasKeyFrame(data))).toBeNull();
    }
    // Each hidden frame alone shows nothing.
    for (const { data } of supers) {
      expect(checker.check(framesOf(data)[0], false)).toBe(
        'the chunk shows no frame: a hidden VP9 frame comes in a superframe with the one shown',
      );
    }
  });

  it('reads 1- to 4-byte superframe sizes', () => {
    const checker = checkerFor('vp09.00.10.08');
    const { data } = twoPass.find((f) => framesOf(f.data).length > 1)!;
    const [hidden, shown] = framesOf(data);
    for (const sizeBytes of [2, 3, 4]) {
      expect(checker.check(superframe([hidden, shown], sizeBytes), false)).toBeNull();
    }
    expect(checker.check(superframe([SHOW_EXISTING], 1), false)).toBeNull();
  });

  describe('refuses', () => {
    let checker: VideoChunkCheck;
    let hidden: Buffer;
    let shown: Buffer;

    beforeAll(() => {
      checker = checkerFor('vp09.00.10.08');
      [hidden, shown] = framesOf(twoPass.find((f) => framesOf(f.data).length > 1)!.data);
    });

    it('a frame of another profile than the codec string', () => {
      expect(checkerFor('vp09.01.10.08').check(key, true)).toBe(
        'a VP9 frame of profile 0, but the codec string says 1',
      );
      expect(checkerFor('vp09.02.10.10').check(delta, false)).toBe(
        'a VP9 frame of profile 0, but the codec string says 2',
      );
    });

    it('a key frame of another bit depth than the codec string', async () => {
      const { frames } = await encodeVpx({ ...QVGA, frames: 1 }, [
        ...VP9,
        '-pix_fmt',
        'yuv420p10le',
      ]);
      expect(checkerFor('vp09.02.10.12').check(frames[0].data, true)).toBe(
        'a VP9 frame of bit depth 10, but the codec string says 12',
      );
    });

    it('a key frame over the limit, but not one of another size within it', () => {
      expect(checker.check(vga[0].data, true)).toBeNull();
      expect(checker.check(vga[1].data, false)).toBeNull();
      expect(checkerFor('vp09.00.10.08', { maxWidth: 600 }).check(vga[0].data, true)).toBe(
        'a VP9 frame of 640x480 is over the limit of 600x1080',
      );
    });

    it('a superframe whose index sizes do not add up, or hold a zero', () => {
      const bad = superframe([hidden, shown]);
      bad.writeUInt32LE(hidden.length + 1, bad.length - 9);
      expect(checker.check(bad, false)).toBe(
        `VP9 superframe index sizes sum to ${hidden.length + shown.length + 1} bytes, but its frames take ${hidden.length + shown.length}`,
      );
      const zero = superframe([hidden, shown]);
      zero.writeUInt32LE(0, zero.length - 5);
      expect(checker.check(zero, false)).toBe('VP9 superframe frame 2 of 2 has size 0');
      const short = superframe([hidden, shown]).subarray(1);
      expect(checker.check(short, false)).toMatch(/^VP9 superframe index sizes sum to/);
    });

    it('a frame of a superframe that is not a frame, naming it', () => {
      const broken = Buffer.from(shown);
      broken[0] &= 0x3f;
      expect(checker.check(superframe([hidden, broken]), false)).toBe(
        'VP9 superframe frame 2 of 2: VP9 frame_marker 0, not 2',
      );
    });

    it('a chunk whose last byte only looks like an index (no marker at its start) as one frame', () => {
      const fake = superframe([hidden, shown]);
      fake[fake.length - 10] ^= 0x01;
      expect(checker.check(fake, false)).toBe(
        'the chunk shows no frame: a hidden VP9 frame comes in a superframe with the one shown',
      );
    });

    it('a chunk showing two frames', () => {
      expect(checker.check(superframe([delta, SHOW_EXISTING]), false)).toBe(
        'the chunk shows 2 VP9 frames: a chunk is one displayed frame',
      );
    });

    it('a frame marker other than 2, a broken sync code, and an empty chunk', () => {
      const marker = Buffer.from(key);
      marker[0] = (marker[0] & 0x3f) | 0x40;
      expect(checker.check(marker, true)).toBe('VP9 frame_marker 1, not 2');
      const sync = Buffer.from(key);
      sync[2] ^= 0xff;
      expect(checker.check(sync, true)).toBe('the VP9 frame lacks its sync code 49 83 42');
      expect(checker.check(Buffer.alloc(0), true)).toBe('empty chunk');
    });

    it('colour configs a profile cannot code, and reserved bits set', () => {
      // frame_marker, profile bits (low, high), show_existing 0, key 0, shown 1, error_res 0.
      expect(checker.check(bits(`10 00 0 0 1 0 ${SYNC} 111 0`), true)).toBe(
        'RGB is not coded in VP9 profile 0 (profiles 0 and 2 are 4:2:0)',
      );
      const profile1 = checkerFor('vp09.01.10.08');
      expect(profile1.check(bits(`10 10 0 0 1 0 ${SYNC} 010 0 11 0`), true)).toBe(
        '4:2:0 is not coded in VP9 profile 1 (profiles 1 and 3 are not 4:2:0)',
      );
      expect(profile1.check(bits(`10 10 0 0 1 0 ${SYNC} 010 0 10 1`), true)).toBe(
        'a VP9 colour config with its reserved bit set',
      );
      expect(profile1.check(bits(`10 10 0 0 1 0 ${SYNC} 111 1`), true)).toBe(
        'a VP9 colour config with its reserved bit set',
      );
      expect(checkerFor('vp09.03.10.10').check(bits('10 11 1 0 0 1 0'), true)).toBe(
        'VP9 profile 3 with its reserved bit set',
      );
    });

    it('the key flag on an intra-only frame, which is not a key frame', () => {
      // Hidden (show_frame 0), intra_only 1, reset_frame_context, sync, refresh flags, 320x240.
      const size =
        (320 - 1).toString(2).padStart(16, '0') + (240 - 1).toString(2).padStart(16, '0');
      const intraOnly = bits(`10 00 0 1 0 0 1 00 ${SYNC} 00000001 ${size} 0`);
      const chunk = superframe([intraOnly, SHOW_EXISTING]);
      expect(checker.check(chunk, false)).toBeNull();
      expect(checker.check(chunk, true)).toBe('flagged key, but the chunk holds no VP9 key frame');
      expect(checkerFor('vp09.00.10.08', { height: 180, maxHeight: 200 }).check(chunk, false)).toBe(
        'VP9 superframe frame 1 of 2: a VP9 frame of 320x240 is over the limit of 1920x200',
      );
    });

    it('every prefix of a frame short of its header, without throwing', () => {
      for (const [frame, flag] of [
        [key, true],
        [delta, false],
      ] as const) {
        for (let n = 0; n <= frame.length; n++) {
          const verdict = checker.check(frame.subarray(0, n), flag);
          if (n < 4) {
            expect(typeof verdict).toBe('string');
          } else {
            expect(verdict === null || typeof verdict === 'string').toBe(true);
          }
        }
        expect(checker.check(frame, flag)).toBeNull();
      }
    });

    it('arbitrary bytes with a string or null, never an exception', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, flag) => {
          const verdict = checker.check(Buffer.from(bytes), flag);
          return verdict === null || typeof verdict === 'string';
        }),
        { numRuns: 2000 },
      );
      // Superframe indexes of any content around real frames.
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 34 }), (index) => {
          const marker = 0xc0 | (index[0] & 0x1f);
          const chunk = Buffer.concat([
            hidden,
            shown,
            Buffer.from([marker]),
            index,
            Buffer.from([marker]),
          ]);
          const verdict = checker.check(chunk, false);
          return verdict === null || typeof verdict === 'string';
        }),
        { numRuns: 2000 },
      );
    });
  });

  describe('throws at construction', () => {
    it.each([
      ['vp8', 'codec vp8 is not vp09.PP.LL.DD'],
      ['vp09.04.10.08', 'codec vp09.04.10.08: VP9 profile 4 is not 0 to 3'],
      ['vp09.00.15.08', 'codec vp09.00.15.08: 15 is not a VP9 level'],
      ['vp09.00.10.10', 'codec vp09.00.10.10: VP9 profile 0 has bit depth 8, not 10'],
      ['vp09.02.10.08', 'codec vp09.02.10.08: VP9 profile 2 has bit depth 10 or 12, not 8'],
    ])('for codec %s', (codec, message) => {
      expect(() => checkerFor(codec)).toThrow(message);
    });

    it('for an empty size or one over the limit', () => {
      expect(() => checkerFor('vp09.00.10.08', { height: 0 })).toThrow(
        'a VP9 size of 320x0 is empty',
      );
      expect(() => checkerFor('vp09.00.10.08', { maxWidth: 300 })).toThrow(
        '320x240 is over the limit of 300x1080',
      );
    });
  });
});
