import fc from 'fast-check';
import {
  annexBToAvcc,
  avcCFromParameterSets,
  avcCodecString,
  isIdrAccessUnit,
  NalType,
  nalUnitType,
  splitAnnexBAccessUnits,
  splitAnnexBNalUnits,
} from '../../protocol/annexb';
import type { VideoChunkCheck } from '../../stream/chunk-gate';
import { BUNDLED, encodeH264, runTool, type TestVideo } from '../../../test/support/bitstreams';
import { createH264Checker, parseAvcC, parseSps, type H264CheckerOptions } from './h264';

/** An `avc1.*` session's view of a libx264 stream: its description, codec and chunks. */
interface AvcStream {
  annexB: Buffer;
  sps: Uint8Array;
  pps: Uint8Array;
  description: Uint8Array;
  codec: string;
  chunks: Buffer[];
  keys: boolean[];
}

const QVGA = { width: 320, height: 240, frames: 30, gop: 10 };
const LIMITS = { maxWidth: 1920, maxHeight: 1080 };

async function avcStream(
  video: TestVideo & { gop: number },
  extra: string[] = [],
): Promise<AvcStream> {
  const annexB = await encodeH264(video, extra);
  const units = splitAnnexBNalUnits(annexB);
  const sps = units.find((nal) => nalUnitType(nal) === NalType.Sps);
  const pps = units.find((nal) => nalUnitType(nal) === NalType.Pps);
  if (!sps || !pps) {
    throw new Error('no parameter sets');
  }
  const aus = splitAnnexBAccessUnits(annexB);
  return {
    annexB,
    sps,
    pps,
    description: avcCFromParameterSets(sps, pps),
    codec: avcCodecString(sps),
    chunks: aus.map((au) => Buffer.from(annexBToAvcc(au))),
    keys: aus.map((au) => isIdrAccessUnit(au)),
  };
}

function options(stream: AvcStream, size: { width: number; height: number }): H264CheckerOptions {
  return { description: stream.description, codec: stream.codec, ...size, ...LIMITS };
}

/** Each NAL unit behind its `lengthSize`-byte big-endian length. */
function avcc(units: Uint8Array[], lengthSize = 4): Buffer {
  return Buffer.concat(
    units.flatMap((nal) => {
      const length = Buffer.alloc(lengthSize);
      length.writeUIntBE(nal.length, 0, lengthSize);
      return [length, Buffer.from(nal)];
    }),
  );
}

/** The NAL units of a 4-byte-length AVCC chunk. */
function unitsOf(chunk: Buffer): Buffer[] {
  const units: Buffer[] = [];
  for (let at = 0; at < chunk.length; at += 4 + chunk.readUInt32BE(at)) {
    units.push(chunk.subarray(at + 4, at + 4 + chunk.readUInt32BE(at)));
  }
  return units;
}

/** ue(v) as §9.1 codes it. */
function ueBits(value: number): string {
  const body = (value + 1).toString(2);
  return '0'.repeat(body.length - 1) + body;
}

/** A slice NAL unit whose header starts first_mb_in_slice, slice_type, pic_parameter_set_id. */
function slice(
  type: number,
  refIdc: number,
  firstMb: number,
  sliceType: number,
  ppsId: number,
): Buffer {
  const bits = ueBits(firstMb) + ueBits(sliceType) + ueBits(ppsId) + '1';
  const padded = bits.padEnd(Math.ceil(bits.length / 8) * 8, '0');
  return Buffer.from([
    (refIdc << 5) | type,
    ...(padded.match(/.{8}/g) ?? []).map((b) => parseInt(b, 2)),
  ]);
}

function refusals(checker: VideoChunkCheck, stream: AvcStream): Array<string | null> {
  return stream.chunks.map((chunk, i) => checker.check(chunk, stream.keys[i]));
}

async function probedSize(annexB: Buffer): Promise<{ width: number; height: number }> {
  const json = await runTool(
    BUNDLED.ffprobe,
    ['-v', 'error', '-f', 'h264', '-show_streams', '-of', 'json', '-i', 'pipe:0'],
    annexB,
  );
  const [stream] = (
    JSON.parse(json.toString()) as { streams: Array<{ width: number; height: number }> }
  ).streams;
  return { width: stream.width, height: stream.height };
}

describe('parseAvcC and parseSps', () => {
  it.each<
    [
      string,
      TestVideo,
      string[],
      { profile: number; chroma: number; depth: number; frameMbsOnly: boolean },
    ]
  >([
    [
      '4:2:0 cropped to 318x238',
      { width: 318, height: 238, frames: 1 },
      [],
      { profile: 100, chroma: 1, depth: 8, frameMbsOnly: true },
    ],
    [
      '1080p (1088 coded)',
      { width: 1920, height: 1080, frames: 1 },
      ['-preset', 'ultrafast'],
      { profile: 66, chroma: 1, depth: 8, frameMbsOnly: true },
    ],
    [
      '4:4:4 at 321x241',
      { width: 321, height: 241, frames: 1, pattern: 'testsrc' },
      ['-pix_fmt', 'yuv444p'],
      { profile: 244, chroma: 3, depth: 8, frameMbsOnly: true },
    ],
    [
      '4:2:2 at 318x238',
      { width: 318, height: 238, frames: 1 },
      ['-pix_fmt', 'yuv422p'],
      { profile: 122, chroma: 2, depth: 8, frameMbsOnly: true },
    ],
    [
      '10-bit at 318x238',
      { width: 318, height: 238, frames: 1 },
      ['-pix_fmt', 'yuv420p10le'],
      { profile: 110, chroma: 1, depth: 10, frameMbsOnly: true },
    ],
    [
      'interlaced 320x240',
      { width: 320, height: 240, frames: 1 },
      ['-flags', '+ildct+ilme', '-x264-params', 'interlaced=1'],
      { profile: 100, chroma: 1, depth: 8, frameMbsOnly: false },
    ],
    [
      'with scaling lists (cqm=jvt)',
      { width: 320, height: 240, frames: 1 },
      ['-x264-params', 'cqm=jvt'],
      { profile: 100, chroma: 1, depth: 8, frameMbsOnly: true },
    ],
  ])('reads %s as ffprobe does', async (_name, video, extra, expected) => {
    const stream = await avcStream({ ...video, gop: 10 }, extra);
    const avc = parseAvcC(stream.description);
    expect(avc).toMatchObject({ profile: expected.profile, lengthSize: 4 });
    expect(avc.sps).toHaveLength(1);
    expect(Buffer.from(avc.sps[0]).equals(stream.sps)).toBe(true);
    expect(Buffer.from(avc.pps[0]).equals(stream.pps)).toBe(true);
    const sps = parseSps(avc.sps[0]);
    expect(sps).toMatchObject({
      profileIdc: expected.profile,
      chromaFormatIdc: expected.chroma,
      bitDepthLuma: expected.depth,
      bitDepthChroma: expected.depth,
      frameMbsOnly: expected.frameMbsOnly,
      spsId: 0,
    });
    expect({ width: sps.width, height: sps.height }).toEqual(await probedSize(stream.annexB));
    expect({ width: sps.width, height: sps.height }).toEqual({
      width: video.width,
      height: video.height,
    });
    expect(sps.codedWidth % 16).toBe(0);
    expect(sps.codedHeight % (expected.frameMbsOnly ? 16 : 32)).toBe(0);
  });

  it('refuses an SPS cut short and what is not an SPS', async () => {
    const { sps, pps } = await avcStream({ ...QVGA, frames: 1 });
    expect(() => parseSps(sps.subarray(0, 6))).toThrow('the SPS is cut short');
    expect(() => parseSps(pps)).toThrow('not an SPS');
  });
});

describe('createH264Checker', () => {
  let main: AvcStream;
  let sliced: AvcStream;
  let other: AvcStream;

  beforeAll(async () => {
    [main, sliced, other] = await Promise.all([
      avcStream(QVGA),
      avcStream(QVGA, ['-x264-params', 'slices=4']),
      avcStream({ width: 640, height: 480, frames: 1, gop: 10 }),
    ]);
  });

  const qvga = { width: 320, height: 240 };

  it('refuses B slices: chunks must come in capture order', async () => {
    const stream = await avcStream({ ...QVGA, gop: 5 }, ['-bf', '2']);
    const checker = createH264Checker(options(stream, QVGA));
    const verdicts = refusals(checker, stream);
    expect(verdicts).toContain(
      'B slices are not accepted: send frames in capture order (no B-frames)',
    );
    expect(verdicts.filter((v, i) => v === null && stream.keys[i]).length).toBeGreaterThan(0);
  });

  it.each<[string, TestVideo, string[]]>([
    ['High', QVGA, []],
    ['Constrained Baseline', QVGA, ['-profile:v', 'baseline']],
    ['4 slices per picture', QVGA, ['-x264-params', 'slices=4']],
    ['interlaced (MBAFF)', QVGA, ['-flags', '+ildct+ilme', '-x264-params', 'interlaced=1']],
    [
      '4:4:4 at an odd size',
      { width: 321, height: 241, frames: 12, pattern: 'testsrc' },
      ['-pix_fmt', 'yuv444p'],
    ],
    ['1080p', { width: 1920, height: 1080, frames: 12 }, ['-preset', 'ultrafast']],
  ])(
    'accepts every chunk of libx264 %s with its true key flag, and refuses the flipped flag',
    async (_name, video, extra) => {
      const stream = await avcStream({ ...video, gop: 5 }, extra);
      const checker = createH264Checker(options(stream, video));
      expect(refusals(checker, stream)).toEqual(stream.chunks.map(() => null));
      expect(stream.keys.filter(Boolean).length).toBe(Math.ceil(stream.chunks.length / 5));
      for (const [i, chunk] of stream.chunks.entries()) {
        expect(checker.check(chunk, !stream.keys[i])).toBe(
          stream.keys[i]
            ? 'the chunk holds an IDR picture but is not flagged key'
            : 'flagged key, but the chunk holds no IDR picture',
        );
      }
    },
  );

  it('reads 2-byte NAL unit lengths when the avcC says so', () => {
    const description = Uint8Array.from(main.description);
    description[4] = 0xfd;
    const checker = createH264Checker({ ...options(main, qvga), description });
    for (const [i, chunk] of main.chunks.entries()) {
      expect(checker.check(avcc(unitsOf(chunk), 2), main.keys[i])).toBeNull();
    }
    expect(checker.check(main.chunks[0], true)).toMatch(/^NAL unit length 0 at byte 0$/);
  });

  it('reads 1-byte NAL unit lengths when the avcC says so', () => {
    const description = Uint8Array.from(main.description);
    description[4] = 0xfc;
    const checker = createH264Checker({ ...options(main, qvga), description });
    expect(checker.check(avcc([slice(5, 3, 0, 7, 0), slice(5, 3, 150, 7, 0)], 1), true)).toBeNull();
    expect(checker.check(avcc([slice(1, 2, 0, 5, 0)], 1), false)).toBeNull();
  });

  it('accepts in-band SPS and PPS identical to the description', () => {
    const checker = createH264Checker(options(main, qvga));
    const chunk = avcc([main.sps, main.pps, ...unitsOf(main.chunks[0])]);
    expect(checker.check(chunk, true)).toBeNull();
  });

  describe('refuses', () => {
    let checker: VideoChunkCheck;
    let key: Buffer;
    let delta: Buffer;

    beforeAll(() => {
      checker = createH264Checker(options(main, qvga));
      key = main.chunks[0];
      delta = main.chunks[main.keys.indexOf(false)];
    });

    it('a chunk cut short inside its last NAL unit', () => {
      const last = unitsOf(key).at(-1)!;
      expect(checker.check(key.subarray(0, key.length - 10), true)).toBe(
        `NAL unit length ${last.length} overruns the chunk (${key.length - 10} bytes)`,
      );
    });

    it('a NAL unit length beyond the chunk', () => {
      const chunk = Buffer.from(avcc([slice(5, 3, 0, 7, 0)]));
      const actual = chunk.length;
      chunk.writeUInt32BE(4000, 0);
      expect(checker.check(chunk, true)).toBe(
        `NAL unit length 4000 overruns the chunk (${actual} bytes)`,
      );
    });

    it('a zero length, a length field cut off and an empty chunk', () => {
      expect(checker.check(Buffer.concat([Buffer.alloc(4), key]), true)).toBe(
        'NAL unit length 0 at byte 0',
      );
      expect(checker.check(Buffer.concat([key, Buffer.from([0, 0])]), true)).toBe(
        `the NAL unit length at byte ${key.length} is cut off (the chunk has ${key.length + 2} bytes)`,
      );
      expect(checker.check(Buffer.alloc(0), true)).toBe('empty chunk');
    });

    it('a NAL unit with forbidden_zero_bit set', () => {
      const chunk = Buffer.from(key);
      chunk[4] |= 0x80;
      expect(checker.check(chunk, true)).toBe('the NAL unit at byte 4 has forbidden_zero_bit set');
    });

    it.each([
      [0, 'unspecified'],
      [2, 'data partition'],
      [4, 'data partition'],
      [13, 'SPS extension'],
      [14, 'SVC prefix'],
      [15, 'subset SPS'],
      [19, 'auxiliary slice'],
      [20, 'SVC/MVC slice extension'],
      [22, 'reserved'],
      [31, 'unspecified'],
    ])('NAL unit type %i (%s)', (type, name) => {
      const chunk = avcc([Buffer.from([0x60 | type, 0x88, 0x80]), slice(5, 3, 0, 7, 0)]);
      expect(checker.check(chunk, true)).toBe(`NAL unit type ${type} (${name}) is not allowed`);
    });

    it('an IDR and a non-IDR slice in one chunk', () => {
      expect(checker.check(Buffer.concat([key, delta]), true)).toBe(
        'the chunk mixes IDR and non-IDR slices',
      );
    });

    it('a chunk without a slice', () => {
      const sei = unitsOf(key).filter((nal) => nalUnitType(nal) === NalType.Sei);
      expect(sei).toHaveLength(1);
      expect(checker.check(avcc(sei), false)).toBe('the chunk holds no slice (no picture)');
    });

    it('an in-band SPS of another stream (640x480): SPS changes mid-stream', () => {
      expect(checker.check(avcc([other.sps, ...unitsOf(key)]), true)).toBe(
        'SPS changes mid-stream: an in-band SPS differs from the description (avcC)',
      );
      const changedPps = Buffer.from(main.pps);
      changedPps[changedPps.length - 1] ^= 0x01;
      expect(checker.check(avcc([changedPps, ...unitsOf(key)]), true)).toBe(
        'PPS changes mid-stream: an in-band PPS differs from the description (avcC)',
      );
    });

    it('a P slice relabelled as IDR', () => {
      const p = unitsOf(delta).find(
        (nal) => nalUnitType(nal) === NalType.Slice && nal[0] >> 5 !== 0,
      )!;
      const relabelled = Buffer.from(p);
      relabelled[0] = (relabelled[0] & 0xe0) | NalType.Idr;
      expect(checker.check(avcc([relabelled]), true)).toMatch(
        /^an IDR picture holds a slice of slice_type [05] \(only I and SI are allowed\)$/,
      );
    });

    it('slice headers that are cut short, out of range, or name an unknown PPS', () => {
      expect(checker.check(avcc([Buffer.from([0x65])]), true)).toBe(
        'the slice header at byte 4 is cut short',
      );
      expect(checker.check(avcc([slice(5, 3, 0, 10, 0)]), true)).toBe(
        'slice_type 10 is out of range',
      );
      expect(checker.check(avcc([slice(5, 3, 0, 7, 1)]), true)).toBe(
        'a slice refers to PPS 1, which the description (avcC) does not hold',
      );
      expect(checker.check(avcc([slice(5, 3, 300, 7, 0)]), true)).toBe(
        "a slice starts at macroblock 300, beyond the picture's 300",
      );
      expect(checker.check(avcc([slice(5, 3, 299, 7, 0)]), true)).toBeNull();
    });

    it('nal_ref_idc 0 on an IDR slice, and non-zero on SEI, AUD, end of sequence and filler', () => {
      expect(checker.check(avcc([slice(5, 0, 0, 7, 0)]), true)).toBe(
        'an IDR slice with nal_ref_idc 0',
      );
      for (const type of [6, 9, 10, 11, 12]) {
        expect(
          checker.check(avcc([Buffer.from([0x20 | type, 0x80]), slice(5, 3, 0, 7, 0)]), true),
        ).toBe(`NAL unit type ${type} with nal_ref_idc 1 (it must be 0)`);
      }
      const allowed = avcc([0x09, 0x06, 0x0a, 0x0b, 0x0c].map((h) => Buffer.from([h, 0x80])));
      expect(
        checker.check(Buffer.concat([avcc([slice(5, 3, 0, 7, 0)]), allowed]), true),
      ).toBeNull();
    });

    it('every prefix of a chunk, without throwing', () => {
      for (const [chunk, isKey] of [
        [key, true],
        [delta, false],
      ] as const) {
        for (let n = 0; n < chunk.length; n++) {
          expect(typeof checker.check(chunk.subarray(0, n), isKey)).toBe('string');
        }
        expect(checker.check(chunk, isKey)).toBeNull();
      }
    });

    it('every prefix of a 4-slice chunk cut inside a NAL unit, without throwing', () => {
      const multi = createH264Checker(options(sliced, qvga));
      const chunk = sliced.chunks[0];
      const ends = new Set<number>();
      for (let at = 0; at < chunk.length; at += 4 + chunk.readUInt32BE(at)) {
        ends.add(at);
      }
      for (let n = 1; n < chunk.length; n++) {
        const verdict = multi.check(chunk.subarray(0, n), true);
        if (!ends.has(n)) {
          expect(typeof verdict).toBe('string');
        }
      }
    });

    it('arbitrary bytes with a string or null, never an exception', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 2000 }), fc.boolean(), (bytes, isKey) => {
          const verdict = checker.check(Buffer.from(bytes), isKey);
          return verdict === null || typeof verdict === 'string';
        }),
        { numRuns: 2000 },
      );
    });

    it('corrupted real chunks with a string or null, never an exception', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: main.chunks.length - 1 }),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
            minLength: 1,
            maxLength: 8,
          }),
          (index, edits) => {
            const chunk = Buffer.from(main.chunks[index]);
            for (const [at, value] of edits) {
              chunk[at % chunk.length] = value;
            }
            const verdict = checker.check(chunk, main.keys[index]);
            return verdict === null || typeof verdict === 'string';
          },
        ),
        { numRuns: 1000 },
      );
    });
  });

  describe('throws at construction', () => {
    const build = (change: Partial<H264CheckerOptions>) => () =>
      createH264Checker({ ...options(main, qvga), ...change });
    const edited = (at: number, value: number) => {
      const description = Uint8Array.from(main.description);
      description[at] = value;
      return description;
    };

    it('for an avcC that is not one', () => {
      expect(build({ description: edited(0, 0) })).toThrow('avcC configurationVersion 0 is not 1');
      expect(build({ description: main.description.subarray(0, 3) })).toThrow(
        'the avcC has 3 bytes; it needs at least 7',
      );
      expect(build({ description: main.description.subarray(0, 12) })).toThrow(
        /^avcC SPS 1 of 1: length \d+ with 4 bytes left$/,
      );
      expect(build({ description: main.description.subarray(0, 7) })).toThrow(
        'the avcC ends inside the length of SPS 1 of 1',
      );
      expect(build({ description: edited(4, 0xfe) })).toThrow('3-byte NAL unit lengths');
      expect(build({ description: edited(5, 0xe0) })).toThrow('the avcC holds no SPS');
      expect(build({ description: main.description.subarray(0, 8 + main.sps.length) })).toThrow(
        'the avcC ends before its PPS count',
      );
    });

    it('for an avcC whose SPS is cut short or whose PPS names another SPS', () => {
      expect(
        build({ description: avcCFromParameterSets(main.sps.subarray(0, 6), main.pps) }),
      ).toThrow('avcC SPS 1: the SPS is cut short');
      // pic_parameter_set_id 1, seq_parameter_set_id 1: 010 010 and the stop bit.
      const foreign = Uint8Array.from([0x68, 0b01001010]);
      expect(build({ description: avcCFromParameterSets(main.sps, [main.pps, foreign]) })).toThrow(
        'avcC PPS 1 refers to SPS 1, which the avcC does not hold',
      );
    });

    it('for a codec string whose profile differs from the SPS or whose level is below it', () => {
      expect(main.codec).toMatch(/^avc1\.64000b$/);
      expect(build({ codec: 'avc1.42e00b' })).toThrow(
        'codec avc1.42e00b says profile_idc 66 but the SPS says 100',
      );
      expect(build({ codec: 'avc1.64000a' })).toThrow(
        'codec avc1.64000a says level 1 but the avcC says 1.1',
      );
      expect(build({ codec: 'vp8' })).toThrow('codec vp8 is not avc1.PPCCLL');
      expect(build({ description: edited(1, 66) })).toThrow(
        'the avcC says profile_idc 66 but its SPS says 100',
      );
    });

    it('for a declared size other than the SPS size, or a size over the limit', () => {
      expect(build({ width: 640 })).toThrow('the SPS codes 320x240 but open declared 640x240');
      expect(build({ height: 256 })).toThrow('the SPS codes 320x240 but open declared 320x256');
      expect(build({ maxWidth: 300 })).toThrow('320x240 is over the limit of 300x1080');
      expect(build({ maxHeight: 200 })).toThrow('320x240 is over the limit of 1920x200');
    });

    it('but takes a codec string stating a higher level, or other constraint flags', () => {
      expect(refusals(build({ codec: 'avc1.640028' })(), main)).toEqual(
        main.chunks.map(() => null),
      );
      expect(refusals(build({ codec: 'avc1.64F00C' })(), main)).toEqual(
        main.chunks.map(() => null),
      );
    });
  });
});
