import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
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
import {
  BUNDLED,
  encodeH264,
  encodeVpx,
  oggPackets,
  runTool,
} from '../../../test/support/bitstreams';
import { createAudioPacketChecker, createVideoChunkChecker } from './index';

/** A checker's work on an accepted chunk, as the gate calls it: null when accepted. */
type Check = (chunk: Buffer, key: boolean) => string | null;

interface Workload {
  check: Check;
  chunks: Buffer[];
  keys: boolean[];
}

const LIMITS = { maxWidth: 1920, maxHeight: 1080 };
/** Checks per measurement: enough that one allocation per chunk or two would show as ~1 MB. */
const CHECKS = 200_000;

/** A forced full collection, whether or not node runs with --expose-gc. */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function youngBytes(): number {
  return getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')!
    .space_used_size;
}

/** Bytes allocated in the young generation while the workload runs CHECKS times. */
function allocatedBy(work: Workload, gc: () => void): number {
  const run = (count: number) => {
    let refused = 0;
    for (let i = 0; i < count; i++) {
      const k = i % work.chunks.length;
      if (work.check(work.chunks[k], work.keys[k]) !== null) {
        refused++;
      }
    }
    return refused;
  };
  // Warm up: the optimizing compiler's code is the one that runs per frame.
  expect(run(CHECKS)).toBe(0);
  gc();
  const before = youngBytes();
  const refused = run(CHECKS);
  const allocated = youngBytes() - before;
  expect(refused).toBe(0);
  return allocated;
}

/** The key flag that a checker accepts the chunk with (the other one is refused). */
function trueKey(check: Check, chunk: Buffer): boolean {
  expect(check(chunk, true) === null || check(chunk, false) === null).toBe(true);
  return check(chunk, true) === null;
}

describe('the checkers on an accepted chunk', () => {
  const gc = collector();
  const workloads = new Map<string, Workload>();

  beforeAll(async () => {
    const [annexB, vp8, vp9, ogg] = await Promise.all([
      encodeH264({ width: 1280, height: 720, frames: 60, gop: 30 }, [
        ...['-preset', 'veryfast', '-x264-params', 'slices=4'],
      ]),
      encodeVpx({ width: 640, height: 480, frames: 60 }, ['-c:v', 'libvpx', '-g', '30']),
      encodeVpx(
        { width: 640, height: 480, frames: 60 },
        ['-c:v', 'libvpx-vp9', '-b:v', '500k'],
        true,
      ),
      runTool(BUNDLED.ffmpeg, [
        ...['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'sine=duration=4'],
        ...['-c:a', 'libopus', '-frame_duration', '60', '-f', 'ogg', 'pipe:1'],
      ]),
    ]);
    const units = splitAnnexBNalUnits(annexB);
    const sps = units.find((nal) => nalUnitType(nal) === NalType.Sps)!;
    const pps = units.find((nal) => nalUnitType(nal) === NalType.Pps)!;
    const aus = splitAnnexBAccessUnits(annexB);
    const h264 = createVideoChunkChecker({
      codec: avcCodecString(sps),
      description: avcCFromParameterSets(sps, pps),
      ...{ width: 1280, height: 720 },
      ...LIMITS,
    });
    workloads.set('H.264 (720p, 4 slices)', {
      check: (chunk, key) => h264.check(chunk, key),
      chunks: aus.map((au) => Buffer.from(annexBToAvcc(au))),
      keys: aus.map((au) => isIdrAccessUnit(au)),
    });
    for (const [name, codec, frames] of [
      ['VP8', 'vp8', vp8.frames],
      ['VP9 (superframes)', 'vp09.00.10.08', vp9.frames],
    ] as const) {
      const checker = createVideoChunkChecker({ codec, width: 640, height: 480, ...LIMITS });
      const check: Check = (chunk, key) => checker.check(chunk, key);
      const chunks = frames.map((f) => f.data);
      workloads.set(name, { check, chunks, keys: chunks.map((c) => trueKey(check, c)) });
    }
    const opus = createAudioPacketChecker('opus')!;
    const packets = oggPackets(ogg).slice(2);
    workloads.set('Opus', {
      check: (packet) => opus.check(packet),
      chunks: packets,
      keys: packets.map(() => false),
    });
  });

  it.each(['H.264 (720p, 4 slices)', 'VP8', 'VP9 (superframes)', 'Opus'])(
    'allocates nothing for %s (less than 16 KiB over 200 000 checks)',
    (name) => {
      const work = workloads.get(name)!;
      expect(new Set(work.chunks.map((c) => c.length)).size).toBeGreaterThan(20);
      expect(allocatedBy(work, gc)).toBeLessThan(16 * 1024);
    },
  );
});
