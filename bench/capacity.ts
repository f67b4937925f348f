/**
 * bench:capacity: how many real-time camera sessions framegate records per core, at what quality,
 * next to the recorder a team would write first, measured in the same run on the same material.
 * Progress goes to stderr, one JSON object to stdout.
 *
 * Material: the counter scene of bench/support/scene.ts (fixed camera, a person moving behind the
 * counter, sensor grain; 200 frames at 10 fps), as the JPEGs a browser's canvas sends (quality
 * BENCH_JPEG_QUALITY). Session i starts at a different frame of the loop; session 0 at the first,
 * so its first 200 frames are the scene and its recording's SSIM can be taken against it.
 *
 * Per size:
 * (a) CPU per frame of each recorder alone, encoding the 200 JPEGs as fast as it takes them
 *     (the starting point of the searches, and the figures without any real-time overhead);
 * (b) the naive recorder: one `ffmpeg -f image2pipe -c:v mjpeg -framerate 10 -i - -c:v libx264
 *     -preset veryfast -pix_fmt yuv420p out.mp4` per session (x264's other defaults: threads,
 *     lookahead, B-frames), each fed one JPEG every 100 ms; the largest N that keeps up (its stdin
 *     backlog, by the rule framegate is judged by), found by a short search, and the SSIM of
 *     session 0's MP4 at that N (ffmpeg's `ssim` filter, mean over the frames);
 * (c) framegate: the service (its build, dist/src/main.js, on a real Postgres, recording at the
 *     frames' size) and N clients streaming at a real 10 fps; the largest N whose recorders keep
 *     up and whose acks stay within 1 s (bench/support/recording-load.ts), the SSIM of session
 *     0's recording, ack latency (frame sent → ack) and close → ready at that N, each session
 *     closing in turn while the others still stream.
 * Then sessions per core of both, their ratio, and the CPU split of each at its N.
 * Before (a), each encoder setting framegate chose (and some it did not), one at a time on the
 * same JPEGs: CPU per frame, SSIM, bitrate (bench/support/encoder-settings.ts).
 *
 * Env (all optional):
 * - BENCH_SIZES (640x480,1280x720): the frame sizes, in order;
 * - BENCH_SESSION_SECONDS (40): streaming time of each trial, judged on its second half: the naive
 *   ffmpeg reads 5 s of input before it encodes anything (its default analyzeduration), then all
 *   N catch up at once, which takes 20 s near their limit (SSIM covers the first 20 s at most);
 * - BENCH_MAX_TRIALS (5): trials per search;
 * - BENCH_START_SESSIONS (from (a)): `naive,framegate`, where the two searches start;
 * - BENCH_JPEG_QUALITY (80): the JPEGs' quality, as `canvas.toBlob('image/jpeg', 0.8)`;
 * - BENCH_CLOSE_OVER_SECONDS (5): (c) closes its sessions one by one over this time;
 * - BENCH_SETTINGS_RUNS (2): runs of each encoder setting (the least CPU is taken; 0: skip them);
 * - BENCH_QUIET_WAIT_SECONDS (20): before each measurement, wait up to this long for the machine
 *   to be idle (other people's work on the same cores skews every figure);
 * - BENCH_DATA_DIR: where the scene is cached (bench/support/scene.ts);
 * - BENCH_SERVICE_NODE_OPTIONS: the service's NODE_OPTIONS (V8 flags to compare; none by default).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { envSchema } from '../src/config/env.schema';
import { locateTool } from '../src/media/ffmpeg-locator';
import { testDir } from '../test/support/dirs';
import { PgProcess } from '../test/support/pg-process';
import { ServiceProcess } from '../test/support/service-process';
import { hsToken } from '../test/support/tokens';
import {
  decodeOnly,
  measureSettings,
  type SettingsFigures,
  type SettingsVariant,
  withArg,
  withoutArg,
  withX264,
} from './support/encoder-settings';
import { naiveTrial, type NaiveTrialResult } from './support/naive-load';
import { type CpuFigures, CpuWindow, waitForQuiet } from './support/recording-cpu';
import {
  ChildSet,
  encodeOnce,
  ffmpegVersion,
  naiveArgs,
  serviceEncoderArgs,
} from './support/recording-ffmpeg';
import { FramePool } from './support/recording-frames';
import {
  pacedTrial,
  type PacedMedia,
  type PacedTrialResult,
  round,
} from './support/recording-load';
import {
  Cleanup,
  describe,
  filesystemOf,
  machineInfo,
  progressFor,
  sourceState,
} from './support/run-info';
import { benchDataDir, cameraScene, SCENE_FPS, sceneJpegs } from './support/scene';
import { logProblems, stopService } from './support/service-run';
import { ssimAgainstScene, type SsimResult } from './support/video-quality';
import { type Judged, searchLargestKeptUp } from './support/search';

const progress = progressFor('capacity');
const CHANNEL = 'bench';
/** The naive recorder's preset: x264's `veryfast`, what the issue's naive command names. */
const NAIVE_PRESET = 'veryfast';
/** The machine counts as quiet below this share of all cores busy. */
const QUIET_BUSY_PCT = 15;
/** Above this CPU (% of one core) used by processes not ours during a trial, it is disturbed. */
const OTHER_CPU_WARN_PCT = 25;
/** A failed trial that others disturbed is run again, this many times per search. */
const DISTURBED_RETRIES = 2;
/** Acks are timely while no session has more than 1 s of frames unacknowledged (bench:codecs). */
const MAX_ACK_LAG_FRAMES = 10;
/** Searches never go above this many sessions. */
const MAX_SESSIONS = 1000;
/** The largest N of real-time sessions that keeps up, by this bench's retries and bounds. */
const search = <T extends Judged>(
  start: number,
  maxTrials: number,
  trial: (n: number) => Promise<T | null>,
) =>
  searchLargestKeptUp<T>(
    { start, maxSessions: MAX_SESSIONS, maxTrials, disturbedRetries: DISTURBED_RETRIES, progress },
    trial,
  );

/** Session i starts this many frames into the scene's loop after session i − 1 (coprime to 200). */
const SESSION_FRAME_STRIDE = 37;
/** The issue's aims. */
const AIM_RATIO = 1.3;
const AIM_SSIM_TOLERANCE = 0.005;
const AIM_ACK_P99_MS = 250;
const AIM_CLOSE_P95_MS = 100;

interface Size {
  width: number;
  height: number;
}

interface Settings {
  sizes: Size[];
  sessionSeconds: number;
  maxTrials: number;
  jpegQuality: number;
  closeOverSeconds: number;
  settingsRuns: number;
  quietWaitSeconds: number;
  startSessions: { naive: number; framegate: number } | null;
}

function settingsFromEnv(env: NodeJS.ProcessEnv): Settings {
  const num = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    const value = raw === undefined || raw === '' ? fallback : Number(raw);
    if (!Number.isFinite(value) || value < min || value > max) {
      throw new Error(`${name} must be a number in [${min}, ${max}], got ${raw}`);
    }
    return value;
  };
  const sizes = (env.BENCH_SIZES || '640x480,1280x720').split(',').map((text) => {
    const match = /^(\d+)x(\d+)$/.exec(text.trim());
    if (!match) {
      throw new Error(`BENCH_SIZES: "${text}" is not WIDTHxHEIGHT`);
    }
    return { width: Number(match[1]), height: Number(match[2]) };
  });
  return {
    sizes,
    sessionSeconds: num('BENCH_SESSION_SECONDS', 40, 6, 600),
    maxTrials: Math.floor(num('BENCH_MAX_TRIALS', 5, 1, 20)),
    jpegQuality: Math.floor(num('BENCH_JPEG_QUALITY', 80, 1, 100)),
    closeOverSeconds: num('BENCH_CLOSE_OVER_SECONDS', 5, 0, 120),
    settingsRuns: Math.floor(num('BENCH_SETTINGS_RUNS', 2, 0, 10)),
    quietWaitSeconds: num('BENCH_QUIET_WAIT_SECONDS', 20, 0, 600),
    startSessions: startSessionsFrom(env.BENCH_START_SESSIONS),
  };
}

function startSessionsFrom(raw: string | undefined): Settings['startSessions'] {
  if (!raw) {
    return null;
  }
  const match = /^(\d+),(\d+)$/.exec(raw.trim());
  if (!match) {
    throw new Error(`BENCH_START_SESSIONS must be "naive,framegate", got ${raw}`);
  }
  return { naive: Number(match[1]), framegate: Number(match[2]) };
}

/** CPU ms per frame of a window over `frames` frames: the children, and the service's split. */
function perFrame(cpu: CpuFigures, frames: number): Record<string, number | null> {
  const ms = (pct: number | undefined): number | null =>
    pct === undefined || frames === 0 ? null : round(((pct / 100) * cpu.wallMs) / frames, 3);
  return {
    all: frames > 0 ? round(cpu.childrenCpuMs / frames, 3) : null,
    serviceNode: ms(cpu.split?.serviceNodePct),
    encoders: ms(cpu.split?.encodersPct),
    postgresEtc: ms(cpu.split?.restPct),
    loadGenerator: ms(cpu.loadGeneratorPct),
  };
}

async function main(): Promise<number> {
  const settings = settingsFromEnv(process.env);
  const began = performance.now();
  const cleanup = new Cleanup(progress);
  const children = new ChildSet();
  cleanup.stopOnSignals();
  const trialBudgetS = settings.sessionSeconds + settings.closeOverSeconds + 150;
  const budgetMs =
    (300 + settings.sizes.length * 2 * settings.maxTrials * (trialBudgetS + 3 * 20)) * 1000;
  const watchdog = setTimeout(() => {
    progress(`watchdog: no result after ${Math.round(budgetMs / 1000)} s, giving up`);
    void cleanup.run().finally(() => process.exit(1));
  }, budgetMs);
  watchdog.unref();

  const failures: string[] = [];
  const warnings: string[] = [];
  try {
    cleanup.add('ffmpeg processes', () => children.killAll());
    const root = testDir('bench-capacity');
    cleanup.add('temp dir', () => rmSync(root, { recursive: true, force: true }));
    // The service finds ffmpeg as this process does (same PATH, no FFMPEG_PATH): the same binary.
    const ffmpegPath = locateTool('ffmpeg', undefined).path;
    const secret = randomBytes(32).toString('hex');
    const adminToken = hsToken({ sub: 'bench-admin', channel: CHANNEL, scope: 'admin', secret });
    let tokens = 0;
    const nextToken = (): string =>
      hsToken({ sub: `bench-${++tokens}`, channel: CHANNEL, scope: 'stream:publish', secret });

    progress('starting Postgres');
    const pg = new PgProcess(join(root, 'postgres'), 0);
    cleanup.add('postgres', () => pg.stop());
    const databaseUrl = await pg.start();

    const serviceEnvBase: Record<string, string> = {
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      AUTH_JWT_SECRET: secret,
      DATABASE_URL: databaseUrl,
      QUOTA_NODE_MAX_CONNECTIONS: '100000',
      QUOTA_CHANNEL_MAX_CONNECTIONS: '100000',
      QUOTA_HANDSHAKES_PER_MIN: '100000',
      QUOTA_IP_HANDSHAKES_PER_MIN: '100000',
      STREAM_MAX_FPS: '1000',
      STREAM_MAX_KBPS: '1000000',
      // Neither the encoder cap nor admission may be what limits a trial: the CPU is.
      RECORDING_MAX_ENCODERS: String(MAX_SESSIONS),
      RECORDING_CAPACITY_FPS: '1000000',
      // Background work after each close (a full decode of the recording, in the idle CPU class)
      // that the naive recorder does not do; bench:codecs measures it.
      RECORDING_DECODE_CHECK: 'false',
      ...(process.env.BENCH_SERVICE_NODE_OPTIONS
        ? { NODE_OPTIONS: process.env.BENCH_SERVICE_NODE_OPTIONS }
        : {}),
    };
    const serviceConfig = envSchema.parse(serviceEnvBase);

    const results: unknown[] = [];
    for (const size of settings.sizes) {
      results.push(
        await measureSize({
          size,
          settings,
          root,
          ffmpegPath,
          children,
          serviceEnv: serviceEnvBase,
          preset: serviceConfig.RECORDING_PRESET,
          crf: serviceConfig.RECORDING_CRF,
          adminToken,
          nextToken,
          failures,
          warnings,
          cleanup,
        }),
      );
    }

    const result = {
      bench: 'capacity',
      date: new Date().toISOString(),
      machine: machineInfo(),
      source: sourceState(),
      ffmpeg: { path: ffmpegPath, version: ffmpegVersion(ffmpegPath) },
      settings: { ...settings, dataDirFilesystem: filesystemOf(root) },
      sizes: results,
      failures,
      warnings,
      durationSeconds: round((performance.now() - began) / 1000, 1),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return failures.length > 0 ? 1 : 0;
  } finally {
    clearTimeout(watchdog);
    progress('cleaning up');
    await cleanup.run();
  }
}

/** SSIM against the scene, and the bitrate of the MP4 (container included). */
type Quality = SsimResult & { kbps: number };

interface SizeContext {
  size: Size;
  settings: Settings;
  root: string;
  ffmpegPath: string;
  children: ChildSet;
  serviceEnv: Record<string, string>;
  preset: string;
  crf: number;
  adminToken: string;
  nextToken: () => string;
  failures: string[];
  warnings: string[];
  cleanup: Cleanup;
}

async function measureSize(c: SizeContext): Promise<Record<string, unknown>> {
  const { size, settings } = c;
  const label = `${size.width}x${size.height}`;
  const nproc = availableParallelism();
  const noteCpu = (what: string, cpu: CpuFigures): boolean => {
    if (cpu.otherPct <= OTHER_CPU_WARN_PCT) {
      return false;
    }
    const warning = `${label} ${what}: processes not ours used ${cpu.otherPct}% of a core`;
    progress(`  warning: ${warning}`);
    c.warnings.push(warning);
    return true;
  };

  const scene = await cameraScene({ ...size, ffmpegPath: c.ffmpegPath, dataDir: benchDataDir() });
  const jpegs = await sceneJpegs(scene, settings.jpegQuality, c.ffmpegPath);
  const meanJpegBytes = jpegs.reduce((sum, j) => sum + j.length, 0) / jpegs.length;
  const pool = new FramePool(jpegs);
  const frameIndex = (session: number, seq: number): number =>
    (seq - 1 + session * SESSION_FRAME_STRIDE) % jpegs.length;
  progress(
    `${label}: ${jpegs.length} JPEGs of the counter scene, q${settings.jpegQuality}, ` +
      `mean ${Math.round(meanJpegBytes)} bytes`,
  );
  const dir = join(c.root, label);
  const sizeDir = join(dir, 'naive');
  rmSync(sizeDir, { recursive: true, force: true });
  mkdirSync(sizeDir, { recursive: true });
  const naiveCommand = (out: string): string[] => naiveArgs(SCENE_FPS, NAIVE_PRESET, out);
  const encoderOptions = { ...size, fps: SCENE_FPS, preset: c.preset, crf: c.crf };
  const serviceArgs = serviceEncoderArgs(c.ffmpegPath, encoderOptions);
  /** Session 0's output: its SSIM over its first frames, and its bitrate over the whole. */
  const qualityOf = async (path: string): Promise<Quality> => ({
    ...(await ssimAgainstScene(
      c.ffmpegPath,
      scene,
      { data: readFileSync(path), format: 'mp4' },
      dir,
      framesForSsim,
    )),
    kbps: round((statSync(path).size * 8) / settings.sessionSeconds / 1000, 1),
  });
  const framesForSsim = Math.min(scene.frames, Math.floor(settings.sessionSeconds * SCENE_FPS));

  let settingsFigures: SettingsFigures[] = [];
  if (settings.settingsRuns > 0) {
    await waitForQuiet(settings.quietWaitSeconds, QUIET_BUSY_PCT, progress);
    progress(`  encoder settings, ${settings.settingsRuns} runs each:`);
    const cpu = new CpuWindow();
    settingsFigures = await measureSettings(
      c.ffmpegPath,
      scene,
      jpegs,
      settingsVariants(serviceArgs, SCENE_FPS),
      settings.settingsRuns,
      dir,
      progress,
    );
    // Rate control at the bitrate CRF chose: a cap at it, and a target of it.
    const crfKbps = Math.round(settingsFigures.find((f) => f.name === 'current')?.kbps ?? 1000);
    settingsFigures.push(
      ...(await measureSettings(
        c.ffmpegPath,
        scene,
        jpegs,
        rateVariants(serviceArgs, crfKbps),
        settings.settingsRuns,
        dir,
        progress,
      )),
    );
    noteCpu('encoder settings', cpu.end());
  }

  // (a) Each recorder alone, as fast as it goes.
  const alone = async (
    args: string[],
    accessUnits: boolean,
  ): Promise<{ cpuMsPerFrame: number; fps: number; otherPct: number }> => {
    await waitForQuiet(settings.quietWaitSeconds, QUIET_BUSY_PCT, progress);
    const cpu = new CpuWindow();
    const run = await encodeOnce(c.ffmpegPath, args, jpegs, jpegs.length, c.children, accessUnits);
    const figures = cpu.end();
    noteCpu('(a)', figures);
    return {
      cpuMsPerFrame: round(figures.childrenCpuMs / jpegs.length, 3),
      fps: round(run.fps, 1),
      otherPct: figures.otherPct,
    };
  };
  const naiveAlone = await alone(naiveCommand(join(dir, 'naive-alone.mp4')), false);
  const serviceAlone = await alone(serviceArgs, true);
  progress(
    `  (a) alone: naive ${naiveAlone.cpuMsPerFrame} ms CPU/frame, ` +
      `framegate's encoder ${serviceAlone.cpuMsPerFrame} ms CPU/frame`,
  );
  const cpuAllows = (ms: number): number => (nproc * 1000) / (ms * SCENE_FPS);

  // (b) The naive recorder at real time.
  type NaiveTrial = NaiveTrialResult &
    Judged & {
      cpu: CpuFigures;
      cpuMsPerFrame: Record<string, number | null>;
      ssim: Quality | null;
    };
  const naive = await search<NaiveTrial>(
    settings.startSessions?.naive ?? Math.round(0.9 * cpuAllows(naiveAlone.cpuMsPerFrame)),
    settings.maxTrials,
    async (n) => {
      await waitForQuiet(settings.quietWaitSeconds, QUIET_BUSY_PCT, progress);
      progress(`  (b) naive: ${n} sessions for ${settings.sessionSeconds} s`);
      const window: { started?: CpuWindow; figures?: CpuFigures } = {};
      const result = await naiveTrial({
        ffmpegPath: c.ffmpegPath,
        args: naiveCommand,
        outDir: sizeDir,
        sessions: n,
        seconds: settings.sessionSeconds,
        jpeg: (session, seq) => jpegs[frameIndex(session, seq)],
        meanJpegBytes,
        children: c.children,
        onStreaming: (edge) => {
          if (edge === 'start') {
            window.started = new CpuWindow();
          } else {
            window.figures = window.started?.end();
          }
        },
      }).catch((err: unknown) => {
        c.failures.push(`${label} (b) naive with ${n} sessions: ${describe(err)}`);
        return null;
      });
      if (!result || !window.figures) {
        return null;
      }
      const cpu = window.figures;
      const disturbed = noteCpu(`(b) ${n} sessions`, cpu);
      let ssim: Quality | null = null;
      if (result.keptUp) {
        ssim = await qualityOf(result.outputs[0]).catch((err: unknown) => {
          c.failures.push(`${label} (b) SSIM: ${describe(err)}`);
          return null;
        });
      }
      rmSync(sizeDir, { recursive: true, force: true });
      mkdirSync(sizeDir, { recursive: true });
      const trial: NaiveTrial = {
        ...result,
        disturbed,
        cpu,
        cpuMsPerFrame: perFrame(cpu, result.sentFrames),
        ssim,
      };
      progress(
        `    ${result.keptUp ? 'kept up' : `did not keep up (${result.why.join('; ')})`}; ` +
          `sent ${result.sentFps} fps; backlog tail ${result.backlog.maxTail}, slope ` +
          `${result.backlog.slopeSecondHalf}/s; CPU ${cpu.childrenPct}% + load ` +
          `${cpu.loadGeneratorPct}%, other ${cpu.otherPct}%; close p95 ${result.closeMs.p95} ms` +
          (ssim ? `; SSIM ${round(ssim.all, 5)}` : ''),
      );
      return trial;
    },
  );

  // (c) framegate at real time.
  const dataDir = join(dir, 'service');
  const service = new ServiceProcess(
    {
      ...c.serviceEnv,
      NODE_ID: `bench-capacity-${label}`,
      DATA_DIR: dataDir,
      RECORDING_WIDTH: String(size.width),
      RECORDING_HEIGHT: String(size.height),
    },
    dir,
  );
  let stopped = false;
  c.cleanup.add(`service ${label}`, async () => {
    if (!stopped) {
      await stopService(service);
    }
  });
  const baseUrl = await service.listening(120_000);
  progress(`  service listening at ${baseUrl} (pid ${service.child.pid})`);
  const open = { video: { ...size, fps: SCENE_FPS } };
  const media: PacedMedia = {
    open: () => open,
    message: (session, seq, ptsMs) => pool.frame(frameIndex(session, seq), seq, ptsMs),
  };
  type FramegateTrial = PacedTrialResult &
    Judged & {
      cpu: CpuFigures | null;
      cpuMsPerFrame: Record<string, number | null>;
      ssim: Quality | null;
    };
  const framegate = await search<FramegateTrial>(
    settings.startSessions?.framegate ??
      Math.round(
        0.9 *
          Math.max(
            cpuAllows(serviceAlone.cpuMsPerFrame) * 0.85,
            naive.keptUp || cpuAllows(naiveAlone.cpuMsPerFrame),
          ),
      ),
    settings.maxTrials,
    async (n) => {
      await waitForQuiet(settings.quietWaitSeconds, QUIET_BUSY_PCT, progress);
      progress(`  (c) framegate: ${n} sessions for ${settings.sessionSeconds} s`);
      const window: { started?: CpuWindow; figures?: CpuFigures } = {};
      const result = await pacedTrial({
        baseUrl,
        sessions: n,
        seconds: settings.sessionSeconds,
        media,
        tokenFor: () => c.nextToken(),
        adminToken: c.adminToken,
        maxAckLagFrames: MAX_ACK_LAG_FRAMES,
        closeOverMs: settings.closeOverSeconds * 1000,
        onStreaming: (edge) => {
          if (edge === 'start') {
            window.started = new CpuWindow(service.child.pid);
          } else {
            window.figures = window.started?.end();
          }
        },
      }).catch((err: unknown) => {
        c.failures.push(`${label} (c) framegate with ${n} sessions: ${describe(err)}`);
        return null;
      });
      if (!result) {
        return null;
      }
      const cpu = window.figures ?? null;
      const disturbed = cpu !== null && noteCpu(`(c) ${n} sessions`, cpu);
      let ssim: Quality | null = null;
      if (result.keptUp) {
        const recording = join(dataDir, 'recordings', `${result.sessionIds[0]}.mp4`);
        ssim = await qualityOf(recording).catch((err: unknown) => {
          c.failures.push(`${label} (c) SSIM: ${describe(err)}`);
          return null;
        });
      }
      // The recordings are not needed any more, and 40 sessions of 720p fill a small disk.
      rmSync(join(dataDir, 'recordings'), { recursive: true, force: true });
      mkdirSync(join(dataDir, 'recordings'), { recursive: true });
      progress(
        `    ${result.keptUp ? 'kept up' : `did not keep up (${result.why.join('; ')})`}; ` +
          `sent ${result.sentFps} fps; ack p99 ${result.client.ackMs.p99} ms (second half ` +
          `${result.client.ackMsSecondHalf.p99} ms); backlog tail ` +
          `${result.backlog.maxQueuedTail}, slope ${result.backlog.slopeSecondHalf}/s; service ` +
          `CPU ${cpu?.childrenPct ?? '?'}% (node ${cpu?.split?.serviceNodePct ?? '?'}% + ffmpeg ` +
          `${cpu?.split?.encodersPct ?? '?'}% + pg ${cpu?.split?.restPct ?? '?'}%) + load ` +
          `${cpu?.loadGeneratorPct ?? '?'}%, other ${cpu?.otherPct ?? '?'}%; close p95 ` +
          `${result.close.ms.p95} ms` +
          (ssim ? `; SSIM ${round(ssim.all, 5)}` : ''),
      );
      return {
        ...result,
        disturbed,
        cpu,
        cpuMsPerFrame: cpu ? perFrame(cpu, result.sentFrames) : {},
        ssim,
      };
    },
  );
  const stop = await stopService(service);
  stopped = true;
  if (stop.code !== 0) {
    c.failures.push(`${label}: the service exited with ${stop.code}`);
  }
  const serviceLogs = logProblems(`${service.stdout}\n${service.stderr}`);
  rmSync(dir, { recursive: true, force: true });

  const naiveAt = naive.trials.find((t) => t.keptUp && t.sessions === naive.keptUp) ?? null;
  const fgAt = framegate.trials.find((t) => t.keptUp && t.sessions === framegate.keptUp) ?? null;
  const ratio = naive.keptUp > 0 ? round(framegate.keptUp / naive.keptUp, 3) : null;
  const ssimGap = naiveAt?.ssim && fgAt?.ssim ? round(fgAt.ssim.all - naiveAt.ssim.all, 5) : null;
  // Judged where "keeps up" is: the second half, after N sessions and encoders started at once.
  const ackP99 = fgAt?.client.ackMsSecondHalf.p99 ?? null;
  const closeP95 = fgAt?.close.ms.p95 ?? null;
  return {
    size,
    material: {
      scene: { frames: scene.frames, fps: scene.fps, grain: scene.recipe.grain },
      jpegQuality: settings.jpegQuality,
      meanJpegBytes: Math.round(meanJpegBytes),
    },
    commands: {
      naive: naiveCommand('out.mp4'),
      framegateEncoder: serviceArgs,
    },
    encoderSettings: settingsFigures,
    alone: {
      what: 'each recorder alone on the 200 JPEGs, as fast as it takes them: CPU ms per frame',
      naive: naiveAlone,
      framegateEncoder: serviceAlone,
    },
    naive: {
      sessions: naive.keptUp,
      sessionsPerCore: round(naive.keptUp / nproc, 2),
      bracket: { keptUp: naive.keptUp, didNotKeepUp: naive.didNotKeepUp },
      ssim: naiveAt?.ssim ?? null,
      cpuMsPerFrame: naiveAt?.cpuMsPerFrame ?? null,
      closeMs: naiveAt?.closeMs ?? null,
      trials: naive.trials.map(({ outputs: _outputs, ...t }) => t),
    },
    framegate: {
      sessions: framegate.keptUp,
      sessionsPerCore: round(framegate.keptUp / nproc, 2),
      bracket: { keptUp: framegate.keptUp, didNotKeepUp: framegate.didNotKeepUp },
      ssim: fgAt?.ssim ?? null,
      ackMs: fgAt?.client.ackMs ?? null,
      ackMsSecondHalf: fgAt?.client.ackMsSecondHalf ?? null,
      closeMs: fgAt?.close.ms ?? null,
      cpuMsPerFrame: fgAt?.cpuMsPerFrame ?? null,
      trials: framegate.trials.map(({ sessionIds: _ids, ...t }) => t),
      serviceLogs,
    },
    aims: {
      sessionsRatio: {
        aim: `>= ${AIM_RATIO}`,
        value: ratio,
        met: ratio === null ? null : ratio >= AIM_RATIO,
      },
      ssim: {
        aim: `framegate >= naive - ${AIM_SSIM_TOLERANCE}`,
        value: ssimGap,
        met: ssimGap === null ? null : ssimGap >= -AIM_SSIM_TOLERANCE,
      },
      ackP99Ms: {
        aim: `<= ${AIM_ACK_P99_MS}, second half of the trial`,
        value: ackP99,
        met: ackP99 === null ? null : ackP99 <= AIM_ACK_P99_MS,
      },
      closeP95Ms: {
        aim: `<= ${AIM_CLOSE_P95_MS}`,
        value: closeP95,
        met: closeP95 === null ? null : closeP95 <= AIM_CLOSE_P95_MS,
      },
    },
  };
}

/**
 * The settings measured one by one: the arguments before issue 16, then each change kept, in
 * order (the last is the service's current list), then the ones tried and not kept, and what
 * decoding alone costs with and without the range conversion.
 */
function settingsVariants(current: string[], fps: number): SettingsVariant[] {
  const before = withArg(
    withArg(
      withArg(
        withArg(withArg(current, '-preset', 'veryfast'), '-crf', '23'),
        '-pix_fmt',
        'yuv420p',
      ),
      '-g',
      String(fps),
    ),
    '-x264-params',
    'aud=1',
  );
  const fullRange = withArg(before, '-pix_fmt', 'yuvj420p');
  const longGop = withArg(fullRange, '-g', current[current.indexOf('-g') + 1]);
  const superfast = withArg(longGop, '-preset', 'superfast');
  const crf = withArg(superfast, '-crf', current[current.indexOf('-crf') + 1]);
  const kept = withArg(crf, '-x264-params', current[current.indexOf('-x264-params') + 1]);
  if (kept.join(' ') !== current.join(' ')) {
    throw new Error(`the settings steps do not end at the service's arguments: ${kept.join(' ')}`);
  }
  return [
    { name: 'before', change: 'veryfast, crf 23, yuv420p, a keyframe every second', args: before },
    { name: 'fullRange', change: 'yuvj420p: no range conversion', args: fullRange },
    { name: 'gop5s', change: 'a keyframe every 5 s', args: longGop },
    { name: 'superfast', change: 'preset superfast', args: superfast },
    { name: 'crf25', change: 'crf 25', args: crf },
    {
      name: 'current',
      change: 'partitions=none, subme=0: the service now',
      args: current,
    },
    { name: 'noScale', change: 'before, without -s', args: withoutArg(before, '-s') },
    { name: 'scenecut0', change: 'before, scenecut=0', args: withX264(before, 'scenecut=0') },
    { name: 'meDia', change: 'before, me=dia', args: withX264(before, 'me=dia') },
    { name: 'subme1', change: 'before, subme=1', args: withX264(before, 'subme=1') },
    {
      name: 'partitionsNone',
      change: 'crf 25, partitions=none',
      args: withX264(crf, 'partitions=none'),
    },
    { name: 'subme0', change: 'crf 25, subme=0', args: withX264(crf, 'subme=0') },
    { name: 'crf26', change: 'current, crf 26', args: withArg(current, '-crf', '26') },
    { name: 'aq0', change: 'current, aq-mode=0', args: withX264(current, 'aq-mode=0') },
    {
      name: 'ultrafast',
      change: 'current, preset ultrafast',
      args: withArg(current, '-preset', 'ultrafast'),
    },
    {
      name: 'decode',
      change: 'decoding the JPEGs only',
      args: decodeOnly(current, null),
      decodeOnly: true,
    },
    {
      name: 'decodeToLimited',
      change: 'decoding and converting to yuv420p only',
      args: decodeOnly(current, 'yuv420p'),
      decodeOnly: true,
    },
  ];
}

/** CRF capped at `kbps` (a VBV of 2 s), and a plain bitrate target of `kbps` instead of CRF. */
function rateVariants(current: string[], kbps: number): SettingsVariant[] {
  const crfAt = current.indexOf('-crf');
  const vbv = ['-maxrate', `${kbps}k`, '-bufsize', `${2 * kbps}k`];
  return [
    {
      name: 'crfCapped',
      change: `current, capped at ${kbps} kbit/s`,
      args: [...current.slice(0, crfAt + 2), ...vbv, ...current.slice(crfAt + 2)],
    },
    {
      name: 'bitrate',
      change: `current, ${kbps} kbit/s instead of CRF`,
      args: [...current.slice(0, crfAt), '-b:v', `${kbps}k`, ...vbv, ...current.slice(crfAt + 2)],
    },
  ];
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    progress(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
