import { BUNDLED, encodeH264, runTool } from '../../../test/support/bitstreams';
import { NalType, nalUnitType, splitAnnexBNalUnits } from '../../../src/protocol/annexb';
import { spsSize } from './h264-sps';

/** The size ffprobe decodes from an Annex B stream. */
async function probedSize(stream: Buffer): Promise<{ width: number; height: number }> {
  const json = await runTool(
    BUNDLED.ffprobe,
    ['-v', 'error', '-f', 'h264', '-show_entries', 'stream=width,height', '-of', 'json', 'pipe:0'],
    stream,
  );
  const [s] = (JSON.parse(json.toString()) as { streams: { width: number; height: number }[] })
    .streams;
  return { width: s.width, height: s.height };
}

describe('spsSize', () => {
  it.each([
    ['High 4:2:0', 640, 480, []],
    ['a cropped size', 642, 362, []],
    ['Baseline', 320, 242, ['-profile:v', 'baseline']],
    ['High 4:2:2', 322, 240, ['-pix_fmt', 'yuv422p']],
    ['High 4:4:4', 326, 238, ['-pix_fmt', 'yuv444p']],
    ['4:0:0 (gray)', 330, 246, ['-pix_fmt', 'gray']],
    ['interlaced (field macroblock pairs)', 320, 252, ['-x264-params', 'interlaced=1']],
    ['scaling matrices', 352, 288, ['-x264-params', 'cqm=jvt']],
  ])('reads the picture size of %s as ffprobe decodes it', async (_what, width, height, extra) => {
    const stream = await encodeH264({ width, height, frames: 2, gop: 2 }, extra);
    const sps = splitAnnexBNalUnits(stream).find((nal) => nalUnitType(nal) === NalType.Sps);
    expect(spsSize(sps!)).toEqual(await probedSize(stream));
    expect(spsSize(sps!)).toEqual({ width, height });
  });

  it('refuses what is not an SPS, and an SPS cut short', async () => {
    const stream = await encodeH264({ width: 320, height: 240, frames: 1, gop: 1 });
    const units = splitAnnexBNalUnits(stream);
    const sps = units.find((nal) => nalUnitType(nal) === NalType.Sps)!;
    const pps = units.find((nal) => nalUnitType(nal) === NalType.Pps)!;
    expect(() => spsSize(pps)).toThrow('not an SPS');
    expect(() => spsSize(sps.subarray(0, 6))).toThrow('ends before the fields read');
  });
});
