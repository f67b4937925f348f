import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLED } from '../../test/support/bitstreams';
import { testDir } from '../../test/support/dirs';
import { jpegFrames } from '../../test/support/media';
import { descendantsMatching } from '../../test/support/processes';
import { waitFor } from '../../test/support/wait';
import { locateTool } from './ffmpeg-locator';
import { isKeyframe } from './h264-stream';
import { VideoEncoderProcess } from './video-encoder';
import { VideoLanes } from './video-lanes';

const FFMPEG = locateTool('ffmpeg', process.env.FFMPEG_PATH).path;
const FPS = 10;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const CHUNK = 10;

interface Run {
  lanes: VideoLanes;
  out: Array<{ au: Buffer; ts: number }>;
  bad: number[];
  /** The largest number of tail encoders seen while writing. */
  maxSplit: number;
  failures: Error[];
  /** Whether the lanes may split (the recorder's `close` holds a finish lane). */
  mayTail: boolean;
  /** Every encoder the lanes started, and whether it has exited. */
  encoders: Array<{ process: VideoEncoderProcess; exited: boolean }>;
}

function lanesFor(maxTails: number, maxRestarts = 5): Run {
  const run: Run = {
    lanes: null as unknown as VideoLanes,
    out: [],
    bad: [],
    maxSplit: 0,
    failures: [],
    mayTail: true,
    encoders: [],
  };
  run.lanes = new VideoLanes({
    create: (onAccessUnit, keyframeEvery) => {
      const encoder = new VideoEncoderProcess(FFMPEG);
      const entry = { process: encoder, exited: false };
      run.encoders.push(entry);
      encoder.start({
        width: 320,
        height: 240,
        fps: FPS,
        preset: 'veryfast',
        crf: 23,
        ...(keyframeEvery === null ? {} : { keyframeEvery }),
        onAccessUnit,
      });
      const exited = () => {
        entry.exited = true;
      };
      encoder.exited().then(exited, exited);
      return encoder;
    },
    maxTails,
    chunk: CHUNK,
    maxRestarts,
    onFrame: (au, ts) => run.out.push({ au, ts }),
    decodes: () => Promise.resolve(true),
    onBadFrame: (seq) => run.bad.push(seq),
    onDied: () => undefined,
    onFailed: (err) => run.failures.push(err),
  });
  return run;
}

/** Writes frames `from`..`to` (exclusive) with `ahead(i)` records stored after frame i. */
async function write(
  run: Run,
  frames: Buffer[],
  from: number,
  to: number,
  ahead: (i: number) => number,
  finishing: boolean,
  during?: (i: number) => void | Promise<void>,
): Promise<void> {
  for (let i = from; i < to; i++) {
    await during?.(i);
    await run.lanes.write(
      frames[i % frames.length],
      i / FPS,
      i + 1,
      ahead(i),
      finishing,
      run.mayTail,
    );
    run.maxSplit = Math.max(run.maxSplit, run.lanes.split);
  }
}

/**
 * Waits until fewer than `frames` frames are not yet handed over: what the encoders hold until
 * more comes, and the later chunks' frames waiting behind it for their turn.
 */
async function untilEncodingBelow(run: Run, frames: number): Promise<void> {
  while (run.lanes.encoding >= frames) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Frames each build of ffmpeg decodes from the access units written one after the other. */
function decodedFrames(out: Array<{ au: Buffer }>): number[] {
  const dir = testDir('video-lanes');
  const path = join(dir, 'out.h264');
  writeFileSync(path, Buffer.concat(out.map((o) => o.au)));
  try {
    return [FFMPEG, BUNDLED.ffmpeg].map((ffmpeg) => {
      const log = execFileSync(
        ffmpeg,
        ['-hide_banner', '-v', 'error', '-xerror', '-i', path, '-f', 'framemd5', '-'],
        { encoding: 'utf8' },
      );
      return log.split('\n').filter((line) => /^\d/.test(line)).length;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function keyframeIndexes(out: Array<{ au: Buffer }>): number[] {
  return out.flatMap((o, i) => (isKeyframe(o.au) ? [i] : []));
}

/**
 * Kills every encoder of the run still running (as a crash would: the lanes learn it from its
 * exit); with `settle`, waits until their deaths are seen.
 */
async function killEncoders(run: Run, settle: boolean): Promise<number> {
  const running = run.encoders.filter((encoder) => !encoder.exited);
  running.forEach((encoder) => encoder.process.kill());
  if (settle) {
    await sleep(300);
  }
  return running.length;
}

describe('VideoLanes', () => {
  let frames: Buffer[];
  beforeAll(async () => {
    frames = await jpegFrames(320, 240, 10);
  });

  it('keeps one encoder while fewer than three chunks wait', async () => {
    const run = lanesFor(2);
    // Two chunks at once, nothing stored behind them: all of them wait in or for the encoder.
    await write(run, frames, 0, 2 * CHUNK, () => 0, false);
    await run.lanes.end();
    expect(run.maxSplit).toBe(0);
    expect(run.out.map((o) => o.ts)).toEqual(Array.from({ length: 2 * CHUNK }, (_, i) => i / FPS));
    expect(decodedFrames(run.out)).toEqual([2 * CHUNK, 2 * CHUNK]);
  });

  it('splits a finishing tail across the encoders: every frame once, in order, each chunk from a key frame', async () => {
    const run = lanesFor(2);
    const total = 95;
    await write(run, frames, 0, total, (i) => total - 1 - i, true);
    await run.lanes.end();
    expect(run.failures).toEqual([]);
    expect(run.maxSplit).toBe(2);
    expect(run.out.map((o) => o.ts)).toEqual(Array.from({ length: total }, (_, i) => i / FPS));
    const keys = keyframeIndexes(run.out);
    for (let chunkStart = 0; chunkStart < total; chunkStart += CHUNK) {
      expect(keys).toContain(chunkStart);
    }
    expect(decodedFrames(run.out)).toEqual([total, total]);
  });

  it('goes back to one encoder once caught up, starting it on a key frame', async () => {
    const run = lanesFor(2);
    // 40 frames with a backlog behind them, then 25 that come as they are encoded.
    await write(run, frames, 0, 40, (i) => 60 - i, false);
    expect(run.lanes.split).toBe(2);
    // The tails have encoded all they can: a few frames each stay inside until more come, and
    // the next chunk's frames wait behind them, less than the three chunks that keep it split.
    await untilEncodingBelow(run, 3 * CHUNK);
    // In real time: each frame is encoded before the next comes.
    await write(
      run,
      frames,
      40,
      65,
      () => 0,
      false,
      () => sleep(1000 / FPS),
    );
    expect(run.lanes.split).toBe(0);
    await run.lanes.end();
    expect(run.out.map((o) => o.ts)).toEqual(Array.from({ length: 65 }, (_, i) => i / FPS));
    expect(decodedFrames(run.out)).toEqual([65, 65]);
  });

  it('recovers a tail encoder killed mid-tail: its frames go to a new one, none lost or repeated', async () => {
    const run = lanesFor(2);
    const total = 120;
    let killed = false;
    await write(
      run,
      frames,
      0,
      total,
      (i) => total - 1 - i,
      true,
      async (i) => {
        if (i === 60 && !killed) {
          // The launcher starts it in its own time: wait until the tail encoder runs.
          let tail: number | undefined;
          await waitFor(
            () => (tail = descendantsMatching('force_key_frames')[0]?.pid) !== undefined,
            10_000,
            'a tail encoder running',
          );
          process.kill(tail as number, 'SIGKILL');
          killed = true;
        }
      },
    );
    await run.lanes.end();
    expect(killed).toBe(true);
    expect(run.failures).toEqual([]);
    expect(run.bad).toEqual([]);
    expect(run.out.map((o) => o.ts)).toEqual(Array.from({ length: total }, (_, i) => i / FPS));
    expect(decodedFrames(run.out)).toEqual([total, total]);
  });

  it('recovers every encoder killed at once, at a chunk start and mid-chunk, seen before a write or by it: every chunk decodes', async () => {
    // Each kill restarts every lane that held frames.
    const run = lanesFor(2, 100);
    const total = 200;
    const killed: number[] = [];
    // Killed and seen before the next write (at a chunk start, and mid-chunk), and killed just
    // before a write that finds the encoder dead (mid-chunk, and at a chunk start).
    const kills = new Map([
      [40, true],
      [75, true],
      [113, false],
      [150, false],
    ]);
    try {
      await write(
        run,
        frames,
        0,
        total,
        (i) => total - 1 - i,
        false,
        async (i) => {
          const settle = kills.get(i);
          if (settle !== undefined) {
            // Once the encoders are at work: each tail then holds the rest of one chunk and
            // whole later ones, which must each start on a key frame again.
            while (run.out.length < i - 30) {
              await sleep(5);
            }
            killed.push(await killEncoders(run, settle));
          }
        },
      );
      await run.lanes.end();
    } finally {
      run.lanes.kill();
    }
    expect(killed).toHaveLength(4);
    expect(killed.every((n) => n > 0)).toBe(true);
    expect(run.failures).toEqual([]);
    expect(run.bad).toEqual([]);
    expect(run.out.map((o) => o.ts)).toEqual(Array.from({ length: total }, (_, i) => i / FPS));
    expect(decodedFrames(run.out)).toEqual([total, total]);
  });

  it('splits only while allowed, and goes back to one encoder at the next chunk once it no longer is', async () => {
    const run = lanesFor(2);
    const total = 90;
    run.mayTail = false;
    await write(run, frames, 0, 30, (i) => total - 1 - i, false);
    expect(run.maxSplit).toBe(0);
    run.mayTail = true;
    await write(run, frames, 30, 60, (i) => total - 1 - i, false);
    expect(run.maxSplit).toBe(2);
    run.mayTail = false;
    await write(run, frames, 60, total, (i) => total - 1 - i, false);
    expect(run.lanes.split).toBe(0);
    await run.lanes.end();
    expect(run.failures).toEqual([]);
    expect(run.out.map((o) => o.ts)).toEqual(Array.from({ length: total }, (_, i) => i / FPS));
    expect(decodedFrames(run.out)).toEqual([total, total]);
  });
});
