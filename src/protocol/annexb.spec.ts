import fc from 'fast-check';
import { BUNDLED, encodeH264, probePackets, runTool } from '../../test/support/bitstreams';
import {
  AnnexBAccessUnitSplitter,
  annexBToAvcc,
  avcCFromParameterSets,
  avcCodecString,
  isIdrAccessUnit,
  NalType,
  nalUnitType,
  splitAnnexBAccessUnits,
  splitAnnexBNalUnits,
} from './annexb';

const SIZE = { width: 320, height: 240, frames: 30, gop: 10 };
const START = [0, 0, 0, 1];

/** The access unit back in Annex B form, each NAL unit behind a 4-byte start code. */
function annexB(units: readonly Uint8Array[]): Buffer {
  return Buffer.concat(units.flatMap((nal) => [Buffer.from(START), nal]));
}

/** Compared by bytes: jest's toEqual walks typed arrays element by element, far too slowly here. */
function sameAccessUnits(a: Uint8Array[][], b: Uint8Array[][]): boolean {
  return (
    a.length === b.length &&
    a.every(
      (au, i) =>
        au.length === b[i].length && au.every((nal, j) => Buffer.from(nal).equals(b[i][j])),
    )
  );
}

function splitInPieces(stream: Buffer, cuts: number[]): Uint8Array[][] {
  const splitter = new AnnexBAccessUnitSplitter();
  const aus: Uint8Array[][] = [];
  let from = 0;
  for (const cut of [...new Set(cuts)].sort((x, y) => x - y)) {
    aus.push(...splitter.push(stream.subarray(from, cut)));
    from = cut;
  }
  aus.push(...splitter.push(stream.subarray(from)));
  aus.push(...splitter.end());
  return aus;
}

/** The NAL units of an AVCC chunk, read back through its 4-byte lengths. */
function avccUnits(chunk: Uint8Array): Buffer[] {
  const buf = Buffer.from(chunk);
  const units: Buffer[] = [];
  for (let at = 0; at < buf.length;) {
    const n = buf.readUInt32BE(at);
    units.push(buf.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return units;
}

/** The avcC box ffmpeg writes when it puts this Annex B stream into an MP4. */
async function ffmpegAvcC(stream: Buffer): Promise<Buffer> {
  const mp4 = await runTool(
    BUNDLED.ffmpeg,
    [
      ...['-hide_banner', '-loglevel', 'error', '-f', 'h264', '-i', 'pipe:0', '-c', 'copy'],
      ...['-movflags', 'frag_keyframe+empty_moov', '-f', 'mp4', 'pipe:1'],
    ],
    stream,
  );
  const at = mp4.indexOf('avcC');
  return mp4.subarray(at + 4, at - 4 + mp4.readUInt32BE(at - 4));
}

function isSlice(nal: Uint8Array): boolean {
  return nalUnitType(nal) === NalType.Slice || nalUnitType(nal) === NalType.Idr;
}

function parameterSets(stream: Buffer): { sps: Uint8Array; pps: Uint8Array } {
  const units = splitAnnexBNalUnits(stream);
  const sps = units.find((nal) => nalUnitType(nal) === NalType.Sps);
  const pps = units.find((nal) => nalUnitType(nal) === NalType.Pps);
  if (!sps || !pps) {
    throw new Error('no parameter sets in the stream');
  }
  return { sps, pps };
}

describe('Annex B helpers on libx264 output', () => {
  let stream: Buffer;
  let withAud: Buffer;
  let sliced: Buffer;
  let packets: Array<{ size: number; key: boolean }>;

  beforeAll(async () => {
    [stream, withAud, sliced] = await Promise.all([
      encodeH264(SIZE),
      encodeH264(SIZE, ['-x264-params', 'aud=1']),
      encodeH264(SIZE, ['-x264-params', 'slices=4']),
    ]);
    packets = await probePackets('h264', stream);
  });

  it('splits NAL units at every start code, without the start codes and trailing zeros', () => {
    const units = splitAnnexBNalUnits(stream);
    let startCodes = 0;
    for (let i = 2; i < stream.length; i++) {
      if (stream[i] === 1 && stream[i - 1] === 0 && stream[i - 2] === 0) {
        startCodes++;
      }
    }
    expect(units).toHaveLength(startCodes);
    expect(units.slice(0, 4).map(nalUnitType)).toEqual([
      NalType.Sps,
      NalType.Pps,
      NalType.Sei,
      NalType.Idr,
    ]);
    expect(units.every((nal) => nal[nal.length - 1] !== 0 && (nal[0] & 0x80) === 0)).toBe(true);
  });

  it('finds the access units and IDR pictures that ffprobe finds', () => {
    const aus = splitAnnexBAccessUnits(stream);
    expect(packets).toHaveLength(SIZE.frames);
    expect(aus).toHaveLength(packets.length);
    expect(aus.map((au) => isIdrAccessUnit(au))).toEqual(packets.map((p) => p.key));
    expect(aus.map((au) => isIdrAccessUnit(annexB(au)))).toEqual(packets.map((p) => p.key));
    expect(packets.filter((p) => p.key)).toHaveLength(SIZE.frames / SIZE.gop);
  });

  it('keeps the slices of one picture together (first_mb_in_slice > 0)', () => {
    const aus = splitAnnexBAccessUnits(sliced);
    expect(aus).toHaveLength(SIZE.frames);
    for (const au of aus) {
      const slices = au.filter(isSlice);
      expect(slices).toHaveLength(4);
    }
  });

  it('starts each access unit at its AUD when the stream has them', () => {
    const aus = splitAnnexBAccessUnits(withAud);
    expect(aus).toHaveLength(SIZE.frames);
    expect(aus.every((au) => nalUnitType(au[0]) === NalType.Aud)).toBe(true);
    const slicesOf = (list: Uint8Array[][]) => list.map((au) => au.filter(isSlice));
    expect(sameAccessUnits(slicesOf(aus), slicesOf(splitAnnexBAccessUnits(stream)))).toBe(true);
  });

  it('splits a stream arriving in pieces cut anywhere as it splits the whole', () => {
    for (const whole of [stream, withAud]) {
      const expected = splitAnnexBAccessUnits(whole);
      fc.assert(
        fc.property(
          fc.array(fc.integer({ min: 1, max: whole.length - 1 }), { maxLength: 300 }),
          (cuts) => sameAccessUnits(splitInPieces(whole, cuts), expected),
        ),
        { numRuns: 40 },
      );
      // Every byte on its own: each start code straddles pieces.
      const bytes = Array.from({ length: 3000 }, (_, i) => i + 1);
      expect(
        sameAccessUnits(
          splitInPieces(whole.subarray(0, 3001), bytes),
          splitAnnexBAccessUnits(whole.subarray(0, 3001)),
        ),
      ).toBe(true);
    }
  });

  it('writes an access unit as 4-byte length-prefixed NAL units without SPS, PPS and AUD', () => {
    const first = splitAnnexBAccessUnits(withAud)[0];
    expect(first.map(nalUnitType)).toEqual([
      NalType.Aud,
      NalType.Sps,
      NalType.Pps,
      NalType.Sei,
      NalType.Idr,
    ]);
    const kept = first.slice(3).map((nal) => Buffer.from(nal));
    for (const chunk of [annexBToAvcc(first), annexBToAvcc(annexB(first))]) {
      const units = avccUnits(chunk);
      expect(units).toHaveLength(kept.length);
      expect(units.every((nal, i) => nal.equals(kept[i]))).toBe(true);
    }
  });

  it('builds the avcC ffmpeg writes, with the chroma format and bit depths after it', async () => {
    const { sps, pps } = parameterSets(stream);
    const ours = Buffer.from(avcCFromParameterSets(sps, pps));
    const theirs = await ffmpegAvcC(stream);
    // This ffmpeg (2018) stops after the PPS; later ones append what follows, as the spec says.
    expect(ours.subarray(0, theirs.length).equals(theirs)).toBe(true);
    expect(ours.subarray(theirs.length).toString('hex')).toBe('fdf8f800');
  });

  it.each([
    ['yuv422p', 122, 'fef8f800'],
    ['yuv444p', 244, 'fff8f800'],
    ['yuv420p10le', 110, 'fdfafa00'],
  ])(
    'writes %s (profile_idc %i) as chroma format and bit depths %s',
    async (pixFmt, profile, tail) => {
      const { sps, pps } = parameterSets(
        await encodeH264({ ...SIZE, frames: 1 }, ['-pix_fmt', pixFmt]),
      );
      const avcC = avcCFromParameterSets([sps], [pps]);
      expect(avcC[1]).toBe(profile);
      expect(Buffer.from(avcC.subarray(avcC.length - 4)).toString('hex')).toBe(tail);
      expect(avcC).toHaveLength(7 + 2 + sps.length + 2 + pps.length + 4);
    },
  );

  it('writes a Baseline avcC without the extension', async () => {
    const { sps, pps } = parameterSets(
      await encodeH264({ ...SIZE, frames: 1 }, ['-profile:v', 'baseline']),
    );
    const avcC = avcCFromParameterSets(sps, pps);
    expect(avcC).toHaveLength(7 + 2 + sps.length + 2 + pps.length);
    expect(avcCodecString(sps)).toMatch(/^avc1\.42c0[0-9a-f]{2}$/);
  });

  it('reads the codec string ffprobe reports (High, level 1.2)', async () => {
    const json = await runTool(
      BUNDLED.ffprobe,
      ['-v', 'error', '-f', 'h264', '-show_streams', '-of', 'json', '-i', 'pipe:0'],
      stream,
    );
    const [probed] = (
      JSON.parse(json.toString()) as { streams: Array<{ profile: string; level: number }> }
    ).streams;
    expect(probed.profile).toBe('High');
    const codec = avcCodecString(parameterSets(stream).sps);
    expect(codec).toMatch(/^avc1\.64[0-9a-f]{4}$/);
    expect(parseInt(codec.slice(-2), 16)).toBe(probed.level);
  });
});

describe('Annex B helpers on hand-made streams', () => {
  const sps = [0x67, 0x42, 0xc0, 0x1e, 0xda];
  const pps = [0x68, 0xce, 0x3c, 0x80];
  const idr = [0x65, 0x88, 0x84]; // first_mb_in_slice 0
  const next = [0x41, 0x9a, 0x02]; // first_mb_in_slice 0: a new picture
  const second = [0x41, 0x40, 0x02]; // first_mb_in_slice 1: the same picture

  it('ignores bytes before the first start code and empty NAL units', () => {
    const buf = Uint8Array.from([9, 9, 0, 0, 1, 0, 0, 1, ...idr, 0, 0, 0, 0, 1, ...next]);
    expect(splitAnnexBNalUnits(buf).map((nal) => Array.from(nal))).toEqual([idr, next]);
  });

  it('keeps parameter sets written before an AUD with the picture they precede', () => {
    const buf = Uint8Array.from([
      ...[0, 0, 0, 1, ...sps, 0, 0, 0, 1, ...pps, 0, 0, 1, 0x09, 0xf0],
      ...[0, 0, 1, ...idr, 0, 0, 1, ...second, 0, 0, 1, ...next],
    ]);
    const aus = splitAnnexBAccessUnits(buf).map((au) => au.map(nalUnitType));
    expect(aus).toEqual([[7, 8, 9, 5, 1], [1]]);
  });

  it('builds no avcC from what is not a parameter set', () => {
    expect(() => avcCFromParameterSets(Uint8Array.from(idr), Uint8Array.from(pps))).toThrow(
      'not an SPS',
    );
    expect(() => avcCFromParameterSets(Uint8Array.from(sps), Uint8Array.from(idr))).toThrow(
      'not a PPS',
    );
    expect(() => avcCFromParameterSets([], Uint8Array.from(pps))).toThrow('1 to 31 SPS');
    expect(() => avcCodecString(Uint8Array.from(idr))).toThrow('not an SPS');
  });
});
