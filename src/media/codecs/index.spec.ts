import {
  annexBToAvcc,
  avcCFromParameterSets,
  avcCodecString,
  NalType,
  nalUnitType,
  splitAnnexBAccessUnits,
  splitAnnexBNalUnits,
} from '../../protocol/annexb';
import {
  encodeH264,
  encodeVpx,
  BUNDLED,
  oggPackets,
  runTool,
} from '../../../test/support/bitstreams';
import { createAudioPacketChecker, createVideoChunkChecker } from './index';

const QVGA = { width: 320, height: 240 };
const LIMITS = { maxWidth: 1920, maxHeight: 1080 };

describe('createVideoChunkChecker', () => {
  it('checks avc1.* chunks against the avcC in the description', async () => {
    const annexB = await encodeH264({ ...QVGA, frames: 2, gop: 10 });
    const units = splitAnnexBNalUnits(annexB);
    const sps = units.find((nal) => nalUnitType(nal) === NalType.Sps)!;
    const pps = units.find((nal) => nalUnitType(nal) === NalType.Pps)!;
    const [first, second] = splitAnnexBAccessUnits(annexB).map((au) =>
      Buffer.from(annexBToAvcc(au)),
    );
    const codec = avcCodecString(sps);
    const checker = createVideoChunkChecker({
      codec,
      description: avcCFromParameterSets(sps, pps),
      ...QVGA,
      ...LIMITS,
    });
    expect(checker.check(first, true)).toBeNull();
    expect(checker.check(second, false)).toBeNull();
    expect(checker.check(second, true)).toBe('flagged key, but the chunk holds no IDR picture');
    expect(() => createVideoChunkChecker({ codec, ...QVGA, ...LIMITS })).toThrow(
      `video codec ${codec} needs video.description (the avcC)`,
    );
    expect(() =>
      createVideoChunkChecker({ codec, description: new Uint8Array(0), ...QVGA, ...LIMITS }),
    ).toThrow('needs video.description');
  });

  it('checks vp8 and vp09.* frames, ignoring a description', async () => {
    const [vp8, vp9] = await Promise.all([
      encodeVpx({ ...QVGA, frames: 1 }, ['-c:v', 'libvpx']),
      encodeVpx({ ...QVGA, frames: 1 }, ['-c:v', 'libvpx-vp9']),
    ]);
    const description = Uint8Array.from([1, 2, 3]);
    const vp8Checker = createVideoChunkChecker({ codec: 'vp8', description, ...QVGA, ...LIMITS });
    const vp9Checker = createVideoChunkChecker({ codec: 'vp09.00.10.08', ...QVGA, ...LIMITS });
    expect(vp8Checker.check(vp8.frames[0].data, true)).toBeNull();
    expect(vp9Checker.check(vp9.frames[0].data, true)).toBeNull();
    // A VP9 key frame read as VP8: its first byte says key, version 1, not shown.
    expect(vp8Checker.check(vp9.frames[0].data, true)).toBe(
      'the VP8 frame is not shown (show_frame 0): a chunk is one displayed frame',
    );
  });

  it('throws for jpeg and for codecs framegate does not record', () => {
    expect(() => createVideoChunkChecker({ codec: 'jpeg', ...QVGA, ...LIMITS })).toThrow(
      'jpeg sessions send images, which have no chunk checker',
    );
    expect(() => createVideoChunkChecker({ codec: 'avc3.64001f', ...QVGA, ...LIMITS })).toThrow(
      'video codec avc3.64001f is not one framegate records',
    );
  });
});

describe('createAudioPacketChecker', () => {
  it('has nothing to check for PCM, and checks Opus with or without its OpusHead', async () => {
    const ogg = await runTool(BUNDLED.ffmpeg, [
      ...[
        '-hide_banner',
        '-loglevel',
        'error',
        '-nostdin',
        '-f',
        'lavfi',
        '-i',
        'sine=duration=0.2',
      ],
      ...['-c:a', 'libopus', '-f', 'ogg', 'pipe:1'],
    ]);
    const [head, , packet] = oggPackets(ogg);
    expect(createAudioPacketChecker('pcm')).toBeNull();
    for (const checker of [
      createAudioPacketChecker('opus', head),
      createAudioPacketChecker('opus'),
    ]) {
      expect(checker?.check(packet)).toBeNull();
      expect(checker?.check(Buffer.alloc(0))).toBe('empty Opus packet');
    }
    expect(() => createAudioPacketChecker('opus', Buffer.from('OpusTags'))).toThrow(
      'an OpusHead has at least 19 bytes, not 8',
    );
  });
});
