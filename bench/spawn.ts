/**
 * bench:spawn: what starting encoders costs the service's event loop. When N sessions open at
 * once (a branch opening, a node taking over another's sessions), N encoders start; child_process
 * forks the service for each, copying its page tables on the event loop.
 *
 * In one run, alternating, the same storm of encoders (`VideoEncoderProcess`, the service's own,
 * through its spawn pacer), each fed JPEGs at 10 fps for a few seconds, then ended:
 * - baseline `direct`: each ffmpeg forked by this process (child_process, as before);
 * - `launcher`: started by the process launcher (src/media/process-launcher.ts).
 * For each: the time each start holds the event loop (p50, p99, max, sum), the event loop's delay
 * during the storm (p99, max), the time from a start to its first access unit (p50, p95), and
 * frames in against access units out (a lost frame would show). Before each storm, ten encoders
 * one at a time, alone: start, one JPEG, end, until its output is complete (what a start costs in
 * latency, with nothing competing for the cores).
 *
 * The process holds a heap like the service's at load (bench/support/heap.ts).
 * Progress goes to stderr, one JSON object to stdout.
 *
 * Env (all optional):
 * - BENCH_HEAP_MB (300): memory held, in 1 MB buffers, plus small objects like the service's;
 * - BENCH_ENCODERS (26): encoders started in each storm (like 26 sessions opening at once);
 * - BENCH_SECONDS (3): seconds each encoder is fed at 10 fps;
 * - BENCH_ROUNDS (2): storms of each method, alternating.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { locateTool } from '../src/media/ffmpeg-locator';
import { DirectStarter, LauncherStarter, type ProcessStarter } from '../src/media/process-launcher';
import { VideoEncoderProcess } from '../src/media/video-encoder';
import { holdServiceLikeHeap } from './support/heap';
import { benchJpeg } from './support/jpeg';
import { progressFor, sourceState } from './support/run-info';

const progress = progressFor('spawn');

const HEAP_MB = Number(process.env.BENCH_HEAP_MB ?? 300);
const ENCODERS = Number(process.env.BENCH_ENCODERS ?? 26);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const FPS = 10;
/** Starts of one encoder alone per round, before each storm. */
const SINGLE_STARTS = 10;

type Method = 'direct' | 'launcher';

interface Storm {
  launchMs: number[];
  firstUnitMs: number[];
  delayP99Ms: number;
  delayMaxMs: number;
  framesIn: number;
  unitsOut: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

/** `inner`, with the time each launch holds the caller's event loop recorded. */
function timed(inner: ProcessStarter, launchMs: number[]): ProcessStarter {
  return {
    warmUp: () => inner.warmUp(),
    launch: (command, args, handlers) => {
      let inLaunch = true;
      const started = performance.now();
      const control = inner.launch(command, args, {
        ...handlers,
        // The handing over of the pipes holds the loop too: inside the launch for a direct
        // spawn (counted there), later for the launcher's.
        started: (pipes) => {
          const at = performance.now();
          handlers.started(pipes);
          if (!inLaunch) {
            launchMs.push(performance.now() - at);
          }
        },
      });
      inLaunch = false;
      launchMs.push(performance.now() - started);
      return control;
    },
  };
}

/** The service's encoder at 640×480, started through `starter`. */
function startEncoder(
  ffmpegPath: string,
  starter: ProcessStarter,
  onAccessUnit: () => void,
): VideoEncoderProcess {
  const encoder = new VideoEncoderProcess(ffmpegPath, starter);
  encoder.start({ width: 640, height: 480, fps: FPS, preset: 'superfast', crf: 26, onAccessUnit });
  return encoder;
}

/** One encoder: fed at 10 fps for SECONDS, then ended. */
async function runEncoder(
  ffmpegPath: string,
  starter: ProcessStarter,
  jpeg: Buffer,
  storm: Storm,
): Promise<void> {
  const startedAt = performance.now();
  let units = 0;
  const encoder = startEncoder(ffmpegPath, starter, () => {
    if (units++ === 0) {
      storm.firstUnitMs.push(performance.now() - startedAt);
    }
  });
  const frames = SECONDS * FPS;
  for (let i = 0; i < frames; i++) {
    if (!encoder.write(jpeg)) {
      await encoder.drained();
    }
    storm.framesIn++;
    await sleep(1000 / FPS);
  }
  await encoder.end();
  storm.unitsOut += units;
}

async function runStorm(ffmpegPath: string, starter: ProcessStarter, jpeg: Buffer): Promise<Storm> {
  const storm: Storm = {
    launchMs: [],
    firstUnitMs: [],
    delayP99Ms: NaN,
    delayMaxMs: NaN,
    framesIn: 0,
    unitsOut: 0,
  };
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const wrapped = timed(starter, storm.launchMs);
  await Promise.all(
    Array.from({ length: ENCODERS }, () => runEncoder(ffmpegPath, wrapped, jpeg, storm)),
  );
  delay.disable();
  storm.delayP99Ms = delay.percentile(99) / 1e6;
  storm.delayMaxMs = delay.max / 1e6;
  return storm;
}

/** One encoder alone on a quiet machine: start, one JPEG, end; until its output is complete. */
async function singleStart(
  ffmpegPath: string,
  starter: ProcessStarter,
  jpeg: Buffer,
): Promise<number> {
  const startedAt = performance.now();
  let units = 0;
  const encoder = startEncoder(ffmpegPath, starter, () => units++);
  encoder.write(jpeg);
  await encoder.end();
  if (units !== 1) {
    throw new Error(`one JPEG in, ${units} access units out`);
  }
  return performance.now() - startedAt;
}

function summary(storms: Storm[], singles: number[]): Record<string, number> {
  const alone = [...singles].sort((a, b) => a - b);
  const launches = storms.flatMap((s) => s.launchMs).sort((a, b) => a - b);
  const firstUnits = storms.flatMap((s) => s.firstUnitMs).sort((a, b) => a - b);
  // Two entries per start for the launcher (the request, then the pipes' arrival): per start,
  // the sum over all of them divided by the encoders started.
  const starts = storms.length * ENCODERS;
  return {
    starts,
    loopHeldPerStartMs: round2(launches.reduce((a, b) => a + b, 0) / starts),
    loopHeldCallP50Ms: round2(quantile(launches, 0.5)),
    loopHeldCallP99Ms: round2(quantile(launches, 0.99)),
    loopHeldCallMaxMs: round2(launches.at(-1) ?? NaN),
    loopDelayP99Ms: round2(Math.max(...storms.map((s) => s.delayP99Ms))),
    loopDelayMaxMs: round2(Math.max(...storms.map((s) => s.delayMaxMs))),
    firstUnitP50Ms: Math.round(quantile(firstUnits, 0.5)),
    firstUnitP95Ms: Math.round(quantile(firstUnits, 0.95)),
    aloneStartToOutputP50Ms: round2(quantile(alone, 0.5)),
    aloneStartToOutputMaxMs: round2(alone.at(-1) ?? NaN),
    framesIn: storms.reduce((a, s) => a + s.framesIn, 0),
    unitsOut: storms.reduce((a, s) => a + s.unitsOut, 0),
  };
}

async function main(): Promise<void> {
  const ffmpegPath = locateTool('ffmpeg', process.env.FFMPEG_PATH).path;
  const jpeg = await benchJpeg(30_000);
  progress(`holding ${HEAP_MB} MB; ${ENCODERS} encoders per storm; ${ffmpegPath}`);
  const held = holdServiceLikeHeap(HEAP_MB);
  const starters: Record<Method, ProcessStarter> = {
    direct: new DirectStarter(),
    launcher: new LauncherStarter(),
  };
  // As the service does at boot; with the heap already held, this one fork is the launcher's
  // whole cost to the loop, counted in neither method.
  starters.launcher.warmUp();
  const storms: Record<Method, Storm[]> = { direct: [], launcher: [] };
  const singles: Record<Method, number[]> = { direct: [], launcher: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const method of ['direct', 'launcher'] as const) {
      progress(`round ${r + 1}/${ROUNDS}: ${method}`);
      for (let i = 0; i < SINGLE_STARTS; i++) {
        singles[method].push(await singleStart(ffmpegPath, starters[method], jpeg));
      }
      storms[method].push(await runStorm(ffmpegPath, starters[method], jpeg));
      await sleep(1_000);
    }
  }
  const direct = summary(storms.direct, singles.direct);
  const launcher = summary(storms.launcher, singles.launcher);
  process.stdout.write(
    `${JSON.stringify(
      {
        bench: 'spawn',
        source: sourceState(),
        heldMb: HEAP_MB,
        rssMb: Math.round(process.memoryUsage().rss / 1e6),
        encoders: ENCODERS,
        secondsEach: SECONDS,
        baseline: { method: 'each ffmpeg forked by the service (child_process)', ...direct },
        framegate: { method: 'started by the process launcher', ...launcher },
        loopHeldRatio: round2(direct.loopHeldPerStartMs / launcher.loopHeldPerStartMs),
      },
      null,
      2,
    )}\n`,
  );
  held.length = 0;
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
