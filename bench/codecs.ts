/**
 * bench:codecs: what compressed video from the browser (issue 14) buys against JPEGs, each
 * figure next to its baseline, in one run, on the camera scene of bench/support/scene.ts.
 * Progress goes to stderr, one JSON object to stdout.
 *
 * (a) Bandwidth, for each size: bytes per frame of the JPEGs the SDK sends (quality 70, its
 *     default; 60 and 80 reported) and the SSIM of what framegate records from them (the
 *     service's own x264 arguments); then H.264 and VP9 as a browser's realtime encoder sends them
 *     (bench/support/scene.ts, `cameraEncoderArgs`) at the lowest bitrate, found by bisection, whose
 *     SSIM is at least the JPEG recording's. A compressed session's recording is its chunks as
 *     sent, so the stream's own SSIM is its recording's.
 * (b) Server CPU per recorded frame: the service (its build, dist/src/main.js, on a real Postgres,
 *     defaults, so its decode check runs) and N sessions streaming the scene at a real 10 fps,
 *     JPEG sessions then H.264 sessions; the CPU of the service's process tree and Postgres while
 *     streaming, and after it (close, finish, decode check), over the frames in the recordings.
 * (c) Sessions per core: the largest number of real-time 10 fps sessions whose recorders keep up
 *     and whose acks stay timely, for the JPEG path and for H.264 pass-through, found by the same
 *     search on the same service, restarted with the decode check off (it is background work that
 *     would otherwise run into the next trial; (b) gives its cost).
 *
 * Env (all optional):
 * - BENCH_SIZES ("640x480,1280x720"): the sizes of (a); BENCH_CPU_SIZES (the first of them;
 *   "640x480,1280x720" adds about 3 minutes): of (b); (c) runs at the first size of BENCH_SIZES;
 * - BENCH_VP9 (1): VP9 in (a) too;
 * - BENCH_SESSION_SECONDS (20): the streaming time of every trial;
 * - BENCH_CPU_SESSIONS (16): sessions of each (b) trial at 640×480, fewer in proportion to the
 *   pixels at larger sizes (at least 2);
 * - BENCH_MAX_TRIALS (8), BENCH_MAX_SESSIONS (1500), BENCH_JPEG_START_SESSIONS and
 *   BENCH_PASSTHROUGH_START_SESSIONS (from (b)'s CPU per frame net of idle): each (c) search,
 *   which grows or shrinks the load by half until it has a trial on each side, then bisects;
 * - BENCH_QUIET_WAIT_SECONDS (20): before each measurement, wait up to this long for the machine
 *   to be idle; BENCH_CHECK_WAIT_SECONDS (240): the longest wait for decode checks in (b);
 * - BENCH_GRAIN (4, bench/support/scene.ts SCENE_GRAIN): the scene's sensor grain, to see what the
 *   bandwidth figures owe to it; BENCH_DATA_DIR: where the material is cached.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'pg';
import { envSchema } from '../src/config/env.schema';
import { locateTool } from '../src/media/ffmpeg-locator';
import { PASSTHROUGH_FRAME_WEIGHT } from '../src/media/session-recorder';
import { testDir } from '../test/support/dirs';
import { PgProcess } from '../test/support/pg-process';
import { ServiceProcess } from '../test/support/service-process';
import { hsToken } from '../test/support/tokens';
import { type CpuFigures, CpuWindow, waitForQuiet } from './support/recording-cpu';
import { ffmpegVersion } from './support/recording-ffmpeg';
import { FramePool } from './support/recording-frames';
import {
  chunkMedia,
  jpegMedia,
  type PacedMedia,
  pacedTrial,
  type PacedTrialResult,
  recordingStatus,
  round,
  sleep,
} from './support/recording-load';
import {
  Cleanup,
  describe,
  filesystemOf,
  machineInfo,
  progressFor,
  sourceState,
} from './support/run-info';
import {
  benchDataDir,
  CAMERA_GOP,
  cameraEncoderArgs,
  cameraScene,
  type EncodedScene,
  encodeScene,
  SCENE_FPS,
  SCENE_GRAIN,
  type Scene,
  type SceneCodec,
  sceneJpegs,
} from './support/scene';
import { logProblems, stopService } from './support/service-run';
import { jpegPathRecording, ssimAgainstScene } from './support/video-quality';

const progress = progressFor('codecs');
const CHANNEL = 'bench';
/** The SDK's default JPEG quality (CameraCapture: 0.7), and the qualities reported beside it. */
const JPEG_QUALITY = 70;
const JPEG_QUALITIES = [60, 70, 80];
/** The issue's tolerance: the compressed stream's SSIM within this of the JPEG recording's. */
const SSIM_TOLERANCE = 0.005;
/**
 * The bisection stops once its bracket is this narrow (ratio of bitrates), not at an SSIM
 * margin: on grainy material SSIM moves by 0.001 over a third of the bitrate...
 */
const BITRATE_PRECISION = 1.05;
/** ...and after this many encodes at most. */
const MAX_ENCODES = 14;
/** Acks are timely while no session has more than 1 s of frames unacknowledged. */
const MAX_ACK_LAG_FRAMES = 10;
/** The machine counts as quiet below this share of all cores busy. */
const QUIET_BUSY_PCT = 15;
/** Above this CPU (% of one core) used by processes not ours during a window, it is flagged. */
const OTHER_CPU_WARN_PCT = 25;
/** (c) trials that failed while others used the machine are run again, this many. */
const DISTURBED_RETRIES = 2;
/** (b) measurements taken while others used the machine are taken again, this many. */
const DISTURBED_CPU_RETRIES = 1;
/** (c) grows or shrinks its load by this factor until it has a trial on each side. */
const SEARCH_GROWTH = 1.5;
/** (c) stops once its bracket is within this share of the sessions kept up (or 1 session). */
const SEARCH_PRECISION = 0.05;
/**
 * Sessions send the scene from this many starting frames, so their key frames are spread over
 * the key-frame interval: sessions that start together would otherwise all send key frames at
 * once (and every recorder cut a fragment at once), which independent cameras never do.
 */
const STREAM_PHASES = 10;
/** How long (b) measures the idle service before its trials. */
const IDLE_SECONDS = 10;
/** The size (b)'s session count is given for; larger sizes get fewer sessions. */
const CPU_REFERENCE_PIXELS = 640 * 480;

interface Size {
  width: number;
  height: number;
}

interface Settings {
  sizes: Size[];
  cpuSizes: Size[];
  vp9: boolean;
  sessionSeconds: number;
  cpuSessions: number;
  maxTrials: number;
  maxSessions: number;
  jpegStartSessions: number | null;
  passthroughStartSessions: number | null;
  quietWaitSeconds: number;
  checkWaitSeconds: number;
  grain: number;
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
  const int = (name: string, fallback: number, min: number, max: number): number =>
    Math.floor(num(name, fallback, min, max));
  const sizes = (name: string, fallback: string): Size[] =>
    (env[name] || fallback).split(',').map((text) => {
      const m = /^(\d+)x(\d+)$/.exec(text.trim());
      const width = Number(m?.[1]);
      const height = Number(m?.[2]);
      if (
        !m ||
        width % 2 ||
        height % 2 ||
        width < 64 ||
        height < 64 ||
        width > 3840 ||
        height > 2160
      ) {
        throw new Error(
          `${name}: "${text}" is not an even WIDTHxHEIGHT between 64x64 and 3840x2160`,
        );
      }
      return { width, height };
    });
  const sizeList = sizes('BENCH_SIZES', '640x480,1280x720');
  return {
    sizes: sizeList,
    cpuSizes: sizes('BENCH_CPU_SIZES', `${sizeList[0].width}x${sizeList[0].height}`),
    vp9: env.BENCH_VP9 !== '0',
    sessionSeconds: num('BENCH_SESSION_SECONDS', 20, 6, 600),
    cpuSessions: int('BENCH_CPU_SESSIONS', 16, 1, 1000),
    maxTrials: int('BENCH_MAX_TRIALS', 8, 1, 30),
    maxSessions: int('BENCH_MAX_SESSIONS', 1500, 1, 5000),
    jpegStartSessions: env.BENCH_JPEG_START_SESSIONS
      ? int('BENCH_JPEG_START_SESSIONS', 1, 1, 5000)
      : null,
    passthroughStartSessions: env.BENCH_PASSTHROUGH_START_SESSIONS
      ? int('BENCH_PASSTHROUGH_START_SESSIONS', 1, 1, 5000)
      : null,
    quietWaitSeconds: num('BENCH_QUIET_WAIT_SECONDS', 20, 0, 600),
    checkWaitSeconds: num('BENCH_CHECK_WAIT_SECONDS', 240, 10, 3600),
    grain: int('BENCH_GRAIN', SCENE_GRAIN, 0, 100),
  };
}

/** One bitrate tried by the bisection. */
interface BitratePoint {
  targetKbps: number;
  /** What the chunks amount to at 10 fps. */
  kbps: number;
  meanBytes: number;
  ssim: number;
  keyFrames: number;
}

/** A bitrate that meets an SSIM target, and what it saves. */
interface BitrateChoice extends BitratePoint {
  /** ssim − the JPEG recording's SSIM. */
  ssimMargin: number;
  /** JPEG bytes per frame (the SDK's quality) / this codec's. */
  ratio: number;
}

interface CodecMatch {
  codec: SceneCodec;
  codecString: string;
  /** The lowest bitrate whose SSIM is at least the JPEG recording's: the headline figure. */
  atLeastJpeg: BitrateChoice & { encoderArgs: string[] };
  /**
   * The lowest bitrate whose SSIM is within SSIM_TOLERANCE below the JPEG recording's: the
   * issue's definition read to the letter, for comparison.
   */
  withinTolerance: BitrateChoice;
  /** Every bitrate encoded, by bitrate. */
  tried: BitratePoint[];
  /** The stream at `atLeastJpeg`: what (b) and (c) send. */
  encoded: EncodedScene;
}

/** The encoder and the SSIM measure, with what they need. */
interface MediaTools {
  ffmpegPath: string;
  workDir: string;
  /** The service's recording settings (its schema's defaults). */
  preset: string;
  crf: number;
}

type Encoding = { point: BitratePoint; encoded: EncodedScene };

/**
 * The lowest bitrate whose stream's SSIM is at least `target`: doubling or halving from `start`
 * until the target is bracketed, then bisecting (geometrically) until the bracket is narrow.
 * SSIM grows with the bitrate; where it does not quite, the lowest bitrate that met the target is
 * what is kept.
 */
async function lowestBitrate(
  target: number,
  startKbps: number,
  encodeAt: (kbps: number) => Promise<Encoding>,
): Promise<Encoding> {
  let below: BitratePoint | null = null;
  let above: Encoding | null = null;
  let kbps = Math.max(16, Math.round(startKbps));
  const seen = new Set<number>();
  for (let i = 0; i < MAX_ENCODES; i++) {
    seen.add(kbps);
    const encoding = await encodeAt(kbps);
    if (encoding.point.ssim >= target) {
      if (!above || kbps < above.point.targetKbps) {
        above = encoding;
      }
    } else if (!below || kbps > below.targetKbps) {
      below = encoding.point;
    }
    if (above && below && above.point.targetKbps / below.targetKbps <= BITRATE_PRECISION) {
      break;
    }
    const next = Math.round(
      !above ? kbps * 2 : !below ? kbps / 2 : Math.sqrt(above.point.targetKbps * below.targetKbps),
    );
    if (next < 16 || next > 100_000 || seen.has(next)) {
      break;
    }
    kbps = next;
  }
  if (!above) {
    throw new Error(`no bitrate up to ${kbps} kbit/s reached SSIM ${target}`);
  }
  return above;
}

/** One codec at one size: both SSIM targets, sharing the encodes. */
async function matchSsim(
  scene: Scene,
  codec: SceneCodec,
  reference: { meanBytes: number; recordingSsim: number },
  tools: MediaTools,
): Promise<CodecMatch> {
  const cache = new Map<number, Encoding>();
  const encodeAt = async (kbps: number): Promise<Encoding> => {
    const known = cache.get(kbps);
    if (known) {
      return known;
    }
    const encoded = await encodeScene(scene, codec, kbps, tools.ffmpegPath);
    const ssim = await ssimAgainstScene(tools.ffmpegPath, scene, encoded.stream, tools.workDir);
    const point: BitratePoint = {
      targetKbps: kbps,
      kbps: round(encoded.kbps, 1),
      meanBytes: Math.round(encoded.meanBytes),
      ssim: round(ssim.all, 5),
      keyFrames: encoded.chunks.filter((c) => c.key).length,
    };
    progress(
      `  ${codec} ${scene.width}x${scene.height} at ${kbps} kbit/s: ${point.meanBytes} B/frame, ` +
        `SSIM ${point.ssim} (JPEG recording ${reference.recordingSsim})`,
    );
    const entry = { point, encoded };
    cache.set(kbps, entry);
    return entry;
  };
  // A first guess a few times below the JPEGs' rate; the bisection corrects it.
  const start = (reference.meanBytes * 8 * scene.fps) / 1000 / 6;
  const strict = await lowestBitrate(reference.recordingSsim, start, encodeAt);
  const loose = await lowestBitrate(
    reference.recordingSsim - SSIM_TOLERANCE,
    strict.point.targetKbps / 2,
    encodeAt,
  );
  const choice = (e: Encoding): BitrateChoice => ({
    ...e.point,
    ssimMargin: round(e.point.ssim - reference.recordingSsim, 5),
    ratio: round(reference.meanBytes / e.point.meanBytes, 2),
  });
  return {
    codec,
    codecString: strict.encoded.openVideo.codec,
    atLeastJpeg: {
      ...choice(strict),
      encoderArgs: cameraEncoderArgs(codec, strict.point.targetKbps),
    },
    withinTolerance: choice(loose),
    tried: [...cache.values()].map((e) => e.point).sort((a, b) => a.targetKbps - b.targetKbps),
    encoded: strict.encoded,
  };
}

/** (a) at one size: the JPEG qualities, then each codec matched to the JPEG recording's SSIM. */
async function bandwidthAt(scene: Scene, codecs: SceneCodec[], tools: MediaTools) {
  const jpeg: Array<{
    quality: number;
    meanBytes: number;
    minBytes: number;
    maxBytes: number;
    /** The JPEGs themselves, decoded, against the camera. */
    ssimSent: number;
    /** What framegate records from them (x264 at the service's settings). */
    recordingSsim: number;
    recordingSsimY: number;
    recordingBytesPerFrame: number;
  }> = [];
  let sdkJpegs: Buffer[] = [];
  let encoderArgs: string[] = [];
  for (const quality of JPEG_QUALITIES) {
    const jpegs = await sceneJpegs(scene, quality, tools.ffmpegPath);
    const sizes = jpegs.map((j) => j.length);
    const sent = await ssimAgainstScene(
      tools.ffmpegPath,
      scene,
      { data: Buffer.concat(jpegs), format: 'jpegs' },
      tools.workDir,
    );
    const recording = await jpegPathRecording(tools.ffmpegPath, jpegs, {
      width: scene.width,
      height: scene.height,
      fps: scene.fps,
      preset: tools.preset,
      crf: tools.crf,
    });
    const recorded = await ssimAgainstScene(
      tools.ffmpegPath,
      scene,
      { data: recording.data, format: 'h264' },
      tools.workDir,
    );
    const entry = {
      quality,
      meanBytes: Math.round(mean(sizes)),
      minBytes: Math.min(...sizes),
      maxBytes: Math.max(...sizes),
      ssimSent: round(sent.all, 5),
      recordingSsim: round(recorded.all, 5),
      recordingSsimY: round(recorded.y, 5),
      recordingBytesPerFrame: Math.round(recording.data.length / scene.frames),
    };
    jpeg.push(entry);
    progress(
      `  JPEG q${quality} ${scene.width}x${scene.height}: ${entry.meanBytes} B/frame, SSIM as sent ` +
        `${entry.ssimSent}, recorded ${entry.recordingSsim}`,
    );
    if (quality === JPEG_QUALITY) {
      sdkJpegs = jpegs;
      encoderArgs = recording.args;
    }
  }
  const reference = jpeg.find((j) => j.quality === JPEG_QUALITY);
  if (!reference) {
    throw new Error(`JPEG_QUALITIES lacks ${JPEG_QUALITY}`);
  }
  const matches: CodecMatch[] = [];
  for (const codec of codecs) {
    matches.push(await matchSsim(scene, codec, reference, tools));
  }
  return { jpeg, reference, sdkJpegs, jpegRecordingArgs: encoderArgs, matches };
}

/** Sessions' media as a paced trial sends them, at one size. */
interface PathMedia {
  path: 'jpeg' | 'h264';
  media: PacedMedia;
}

/** Decode checks of the recordings: pending ones, and how these sessions' came out. */
async function recordingsOf(
  db: Pool,
  sessionIds: string[],
): Promise<{
  recordings: number;
  ready: number;
  frames: number;
  checksLeft: number;
  checksLeftAll: number;
  passed: number;
  failed: number;
  codecs: string[];
}> {
  const { rows } = await db.query<{
    recordings: string;
    ready: string;
    frames: string | null;
    checks_left: string;
    passed: string;
    failed: string;
    codecs: string[] | null;
  }>(
    `SELECT count(*) AS recordings,
            count(*) FILTER (WHERE status = 'ready') AS ready,
            sum(frame_count) AS frames,
            count(*) FILTER (WHERE decode_check IN ('pending', 'checking')) AS checks_left,
            count(*) FILTER (WHERE decode_check = 'passed') AS passed,
            count(*) FILTER (WHERE decode_check = 'failed') AS failed,
            array_agg(DISTINCT video_codec) AS codecs
       FROM recordings WHERE session_id = ANY($1::uuid[])`,
    [sessionIds],
  );
  const all = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM recordings WHERE decode_check IN ('pending', 'checking')`,
  );
  const row = rows[0];
  return {
    recordings: Number(row?.recordings ?? 0),
    ready: Number(row?.ready ?? 0),
    frames: Number(row?.frames ?? 0),
    checksLeft: Number(row?.checks_left ?? 0),
    checksLeftAll: Number(all.rows[0]?.n ?? 0),
    passed: Number(row?.passed ?? 0),
    failed: Number(row?.failed ?? 0),
    codecs: (row?.codecs ?? []).filter((c) => c !== null),
  };
}

/** Waits (at most `seconds`) until no recording waits for its decode check; false if some still do. */
async function checksDrained(db: Pool, seconds: number): Promise<boolean> {
  const deadline = performance.now() + seconds * 1000;
  for (;;) {
    const { rows } = await db.query<{ n: string }>(
      `SELECT count(*) AS n FROM recordings WHERE decode_check IN ('pending', 'checking')`,
    );
    if (Number(rows[0]?.n ?? 0) === 0) {
      return true;
    }
    if (performance.now() >= deadline) {
      return false;
    }
    await sleep(500);
  }
}

interface Service {
  service: ServiceProcess;
  baseUrl: string;
  adminToken: string;
  tokenFor: () => string;
}

function msPerFrame(cpuMs: number, frames: number): number | null {
  return frames > 0 ? round(cpuMs / frames, 4) : null;
}

/** CPU figures of a window, per recorded frame: the whole stack and its split. */
function perFrame(cpu: CpuFigures, frames: number) {
  const of = (pct: number | undefined): number | null =>
    pct === undefined || frames === 0 ? null : round(((pct / 100) * cpu.wallMs) / frames, 4);
  return {
    all: msPerFrame(cpu.childrenCpuMs, frames),
    serviceNode: of(cpu.split?.serviceNodePct),
    ffmpeg: of(cpu.split?.encodersPct),
    postgresEtc: of(cpu.split?.restPct),
  };
}

/**
 * The service stack's CPU with no session, polled once a second as a trial polls it: what a
 * trial's CPU holds that no frame caused (Postgres, timers, the poll itself), in ms per second.
 */
async function idleCpuMsPerSecond(s: Service, seconds: number): Promise<number> {
  const window = new CpuWindow(s.service.child.pid);
  const started = performance.now();
  for (let k = 1; k <= seconds; k++) {
    await sleep(started + k * 1000 - performance.now());
    await recordingStatus(s.baseUrl, s.adminToken).catch(() => null);
  }
  const cpu = window.end();
  return round(cpu.childrenCpuMs / (cpu.wallMs / 1000), 2);
}

/**
 * (b) One path at one size: N sessions for the set time; CPU while they stream, and from the end
 * of streaming until their recordings are ready and decode-checked. `net` takes the idle
 * service's CPU (`idleMsPerSecond`) out of the live figure: what the frames themselves cost.
 */
async function cpuTrial(
  path: PathMedia,
  sessions: number,
  s: Service,
  db: Pool,
  settings: Settings,
  idleMsPerSecond: number,
  warn: (what: string) => void,
) {
  for (let attempt = 0; ; attempt++) {
    await waitForQuiet(settings.quietWaitSeconds, QUIET_BUSY_PCT, progress);
    if (!(await checksDrained(db, settings.checkWaitSeconds))) {
      warn(`(b) ${path.path}: decode checks of earlier trials still running at the start`);
    }
    const windows: { live?: CpuWindow; liveFigures?: CpuFigures; after?: CpuWindow } = {};
    const pid = s.service.child.pid;
    const result = await pacedTrial({
      baseUrl: s.baseUrl,
      sessions,
      seconds: settings.sessionSeconds,
      media: path.media,
      tokenFor: () => s.tokenFor(),
      adminToken: s.adminToken,
      maxAckLagFrames: MAX_ACK_LAG_FRAMES,
      onStreaming: (edge) => {
        if (edge === 'start') {
          windows.live = new CpuWindow(pid);
        } else {
          windows.liveFigures = windows.live?.end();
          windows.after = new CpuWindow(pid);
        }
      },
    });
    const checkStarted = performance.now();
    const drained = await checksDrained(db, settings.checkWaitSeconds);
    const checkSeconds = round((performance.now() - checkStarted) / 1000, 1);
    const after = windows.after?.end();
    const live = windows.liveFigures;
    if (!live || !after) {
      throw new Error('the trial never streamed');
    }
    const recordings = await recordingsOf(db, result.sessionIds);
    const disturbed = live.otherPct > OTHER_CPU_WARN_PCT || after.otherPct > OTHER_CPU_WARN_PCT;
    const summary = {
      path: path.path,
      sessions,
      keptUp: result.keptUp,
      why: result.why,
      sentFrames: result.sentFrames,
      recordedFrames: recordings.frames,
      recordings,
      decodeChecksDone: drained,
      afterStreamingSeconds: checkSeconds,
      cpuMsPerFrame: {
        live: perFrame(live, recordings.frames),
        liveNetOfIdle: msPerFrame(
          live.childrenCpuMs - (idleMsPerSecond * live.wallMs) / 1000,
          recordings.frames,
        ),
        afterStreaming: perFrame(after, recordings.frames),
        total: msPerFrame(live.childrenCpuMs + after.childrenCpuMs, recordings.frames),
      },
      cpu: { live, afterStreaming: after },
      disturbed,
      trial: compactTrial(result),
    };
    progress(
      `  ${path.path}: ${sessions} sessions ${result.keptUp ? 'kept up' : `did not keep up (${result.why.join('; ')})`}; ` +
        `${recordings.frames} frames recorded of ${result.sentFrames} sent; CPU/frame live ` +
        `${summary.cpuMsPerFrame.live.all} ms (net of idle ${summary.cpuMsPerFrame.liveNetOfIdle}; ` +
        `node ${summary.cpuMsPerFrame.live.serviceNode}, ffmpeg ` +
        `${summary.cpuMsPerFrame.live.ffmpeg}), after ${summary.cpuMsPerFrame.afterStreaming.all} ms ` +
        `(${checkSeconds} s, decode checks ${recordings.passed} passed ${recordings.failed} failed); ` +
        `others ${live.otherPct}% / ${after.otherPct}%`,
    );
    if (disturbed && attempt < DISTURBED_CPU_RETRIES) {
      progress('  disturbed by other processes: again');
      continue;
    }
    if (disturbed) {
      warn(`(b) ${path.path} ${sessions} sessions: others used the machine during the measurement`);
    }
    return summary;
  }
}

/** A paced trial without its per-second series (the JSON stays readable). */
function compactTrial(r: PacedTrialResult) {
  const { sessionIds: _ids, ...rest } = r;
  return rest;
}

/**
 * (c) The largest N whose trial keeps up, for one path: from `start`, × or ÷ SEARCH_GROWTH until
 * both sides are known, then bisection, until the bracket is within SEARCH_PRECISION.
 */
async function searchSessions(
  path: PathMedia,
  start: number,
  s: Service,
  settings: Settings,
  nproc: number,
  warn: (what: string) => void,
) {
  const trials: Array<
    Omit<PacedTrialResult, 'sessionIds'> & {
      cpu: CpuFigures | null;
      disturbed: boolean;
      cpuMsPerFrame: ReturnType<typeof perFrame> | null;
    }
  > = [];
  let passMax = 0;
  let failMin = Number.POSITIVE_INFINITY;
  let retries = 0;
  let n = clamp(Math.round(start), 1, settings.maxSessions);
  for (let t = 0; t < settings.maxTrials; t++) {
    await waitForQuiet(settings.quietWaitSeconds, QUIET_BUSY_PCT, progress);
    progress(`(c) ${path.path} trial ${t + 1}: ${n} sessions for ${settings.sessionSeconds} s`);
    const window: { started?: CpuWindow; figures?: CpuFigures } = {};
    const trialN = n;
    const result = await pacedTrial({
      baseUrl: s.baseUrl,
      sessions: trialN,
      seconds: settings.sessionSeconds,
      media: path.media,
      tokenFor: () => s.tokenFor(),
      adminToken: s.adminToken,
      maxAckLagFrames: MAX_ACK_LAG_FRAMES,
      onStreaming: (edge) => {
        if (edge === 'start') {
          window.started = new CpuWindow(s.service.child.pid);
        } else {
          window.figures = window.started?.end();
        }
      },
    }).catch((err: unknown) => {
      warn(`(c) ${path.path} trial with ${trialN} sessions failed: ${describe(err)}`);
      return null;
    });
    if (!result) {
      failMin = Math.min(failMin, trialN);
    } else {
      const cpu = window.figures ?? null;
      const disturbed = cpu !== null && cpu.otherPct > OTHER_CPU_WARN_PCT;
      trials.push({
        ...compactTrial(result),
        cpu,
        disturbed,
        cpuMsPerFrame: cpu ? perFrame(cpu, result.sentFrames) : null,
      });
      progress(
        `  ${result.keptUp ? 'kept up' : `did not keep up (${result.why.join('; ')})`}; sent ` +
          `${result.sentFps} fps; ack lag ≤ ${result.client.maxAckLagSecondHalf}; backlog tail ` +
          `${result.backlog.maxQueuedTail}, slope ${result.backlog.slopeSecondHalf}/s; service CPU ` +
          `${cpu?.childrenPct ?? '?'}% (node ${cpu?.split?.serviceNodePct ?? '?'}%, ffmpeg ` +
          `${cpu?.split?.encodersPct ?? '?'}%), load generator ${cpu?.loadGeneratorPct ?? '?'}%, ` +
          `others ${cpu?.otherPct ?? '?'}%`,
      );
      if (result.keptUp) {
        passMax = Math.max(passMax, trialN);
      } else if (disturbed && retries < DISTURBED_RETRIES) {
        retries++;
        t--;
        progress('  disturbed by other processes: this trial again');
        continue;
      } else {
        failMin = Math.min(failMin, trialN);
      }
    }
    let next: number;
    if (failMin === Number.POSITIVE_INFINITY) {
      next = Math.max(trialN + 1, Math.round(trialN * SEARCH_GROWTH));
    } else if (passMax === 0) {
      next = Math.min(trialN - 1, Math.round(trialN / SEARCH_GROWTH));
    } else {
      next = Math.floor((passMax + failMin) / 2);
    }
    next = clamp(next, 1, settings.maxSessions);
    const precise = failMin - passMax <= Math.max(1, Math.round(SEARCH_PRECISION * passMax));
    if (precise || next <= passMax || next >= failMin || next === trialN) {
      break;
    }
    n = next;
  }
  const atN = trials.find((t) => t.sessions === passMax && t.keptUp) ?? null;
  return {
    sessions: passMax,
    perCore: round(passMax / nproc, 1),
    bracket: {
      keptUp: passMax,
      didNotKeepUp: Number.isFinite(failMin) ? failMin : null,
      cap: settings.maxSessions,
    },
    atN: atN
      ? {
          cpuMsPerFrame: atN.cpuMsPerFrame,
          loadGeneratorPct: atN.cpu?.loadGeneratorPct ?? null,
          serviceCpuPct: atN.cpu?.childrenPct ?? null,
          machineBusyPct: atN.cpu?.machineBusyPct ?? null,
        }
      : null,
    trials,
  };
}

async function startService(
  env: Record<string, string>,
  root: string,
  secret: string,
  cleanup: Cleanup,
): Promise<
  Service & { stop: () => Promise<{ ms: number; code: number | null; killed: boolean }> }
> {
  const service = new ServiceProcess(env, root);
  let stopped: Promise<{ ms: number; code: number | null; killed: boolean }> | null = null;
  const stop = (): Promise<{ ms: number; code: number | null; killed: boolean }> => {
    stopped ??= stopService(service);
    return stopped;
  };
  cleanup.add('service', stop);
  const baseUrl = await service.listening(120_000);
  progress(`service listening at ${baseUrl} (pid ${service.child.pid})`);
  let next = 0;
  return {
    service,
    baseUrl,
    adminToken: hsToken({ sub: 'bench-admin', channel: CHANNEL, scope: 'admin', secret }),
    tokenFor: () =>
      hsToken({ sub: `bench-${next++}`, channel: CHANNEL, scope: 'stream:publish', secret }),
    stop,
  };
}

async function main(): Promise<number> {
  const settings = settingsFromEnv(process.env);
  const began = performance.now();
  const cleanup = new Cleanup(progress);
  cleanup.stopOnSignals();
  const trialSeconds = settings.sessionSeconds + settings.quietWaitSeconds + 120;
  const budgetMs =
    (900 +
      settings.cpuSizes.length * 2 * (trialSeconds + settings.checkWaitSeconds) +
      2 * settings.maxTrials * trialSeconds) *
    1000;
  const watchdog = setTimeout(() => {
    progress(`watchdog: no result after ${Math.round(budgetMs / 1000)} s, giving up`);
    void cleanup.run().finally(() => process.exit(1));
  }, budgetMs);
  watchdog.unref();

  const failures: string[] = [];
  const warnings: string[] = [];
  const warn = (what: string): void => {
    progress(`  warning: ${what}`);
    warnings.push(what);
  };
  try {
    const nproc = availableParallelism();
    const root = testDir('bench-codecs');
    cleanup.add('temp dir', () => rmSync(root, { recursive: true, force: true }));
    const workDir = join(root, 'work');
    mkdirSync(workDir);
    const dataDir = benchDataDir();
    const ffmpegPath = locateTool('ffmpeg', undefined).path;
    const secret = randomBytes(32).toString('hex');
    const serviceEnvBase: Record<string, string> = {
      NODE_ENV: 'production',
      NODE_ID: 'bench-codecs',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      DATA_DIR: join(root, 'data'),
      AUTH_JWT_SECRET: secret,
      QUOTA_NODE_MAX_CONNECTIONS: '100000',
      QUOTA_CHANNEL_MAX_CONNECTIONS: '100000',
      QUOTA_HANDSHAKES_PER_MIN: '100000',
      QUOTA_IP_HANDSHAKES_PER_MIN: '100000',
      STREAM_MAX_KBPS: '1000000',
      // The machine's limit is measured, not the admission policy's figure for it: neither the
      // encoder cap nor the capacity estimate may refuse or throttle a trial's sessions.
      RECORDING_MAX_ENCODERS: '1000',
      RECORDING_CAPACITY_FPS: '1000000',
    };
    const serviceConfig = envSchema.parse({
      ...serviceEnvBase,
      DATABASE_URL: 'postgres://placeholder@127.0.0.1/framegate',
    });
    const tools: MediaTools = {
      ffmpegPath,
      workDir,
      preset: serviceConfig.RECORDING_PRESET,
      crf: serviceConfig.RECORDING_CRF,
    };

    // The material.
    const allSizes = uniqueSizes([...settings.sizes, ...settings.cpuSizes]);
    const scenes = new Map<string, Scene>();
    for (const size of allSizes) {
      const started = performance.now();
      const scene = await cameraScene({ ...size, grain: settings.grain, ffmpegPath, dataDir });
      scenes.set(key(size), scene);
      progress(
        `scene ${size.width}x${size.height}: ${scene.frames} frames ` +
          `${scene.built ? `built in ${Math.round(performance.now() - started)} ms` : 'from the cache'} ` +
          `(${scene.yuvPath})`,
      );
    }
    const sceneOf = (size: Size): Scene => {
      const scene = scenes.get(key(size));
      if (!scene) {
        throw new Error(`no scene at ${key(size)}`);
      }
      return scene;
    };

    // (a) Bandwidth.
    const codecs: SceneCodec[] = settings.vp9 ? ['h264', 'vp9'] : ['h264'];
    const bandwidth = new Map<string, Awaited<ReturnType<typeof bandwidthAt>>>();
    for (const size of uniqueSizes([...settings.sizes, ...settings.cpuSizes])) {
      const measured = settings.sizes.some((s) => key(s) === key(size));
      progress(`(a) ${key(size)}${measured ? '' : ' (for (b) only)'}`);
      bandwidth.set(
        key(size),
        await bandwidthAt(sceneOf(size), measured ? codecs : ['h264'], tools),
      );
    }
    const h264At = (size: Size): CodecMatch => {
      const match = bandwidth.get(key(size))?.matches.find((m) => m.codec === 'h264');
      if (!match) {
        throw new Error(`no H.264 stream at ${key(size)}`);
      }
      return match;
    };
    for (const [size, b] of bandwidth) {
      for (const m of b.matches) {
        if (m.atLeastJpeg.ssimMargin > SSIM_TOLERANCE) {
          failures.push(
            `(a) ${m.codec} ${size}: SSIM ${m.atLeastJpeg.ssim} is not within ${SSIM_TOLERANCE} ` +
              `of the JPEG recording's ${b.reference.recordingSsim}`,
          );
        }
      }
    }
    // The H.264 stream of (b) and (c) from STREAM_PHASES starting frames, key frames spread
    // evenly over the interval between two.
    const phases = new Map<string, EncodedScene[]>();
    for (const size of settings.cpuSizes.concat(settings.sizes.slice(0, 1))) {
      if (phases.has(key(size))) {
        continue;
      }
      const first = h264At(size).encoded;
      const list = [first];
      for (let k = 1; k < STREAM_PHASES; k++) {
        list.push(
          await encodeScene(
            sceneOf(size),
            'h264',
            first.targetKbps,
            ffmpegPath,
            Math.round((k * CAMERA_GOP) / STREAM_PHASES),
          ),
        );
      }
      phases.set(key(size), list);
      progress(
        `  ${key(size)}: the H.264 stream from ${STREAM_PHASES} starting frames, ` +
          `${list.map((e) => Math.round(e.meanBytes)).join(', ')} B/frame`,
      );
    }
    const phasesAt = (size: Size): EncodedScene[] => phases.get(key(size)) ?? [];
    const mediaAt = (size: Size): { jpeg: PathMedia; h264: PathMedia } => {
      const b = bandwidth.get(key(size));
      if (!b) {
        throw new Error(`no material at ${key(size)}`);
      }
      const video = { width: size.width, height: size.height, fps: SCENE_FPS };
      // A JPEG session at another size than the service's default asks to be recorded at its own.
      const recording =
        size.width === serviceConfig.RECORDING_WIDTH &&
        size.height === serviceConfig.RECORDING_HEIGHT
          ? {}
          : { recording: { width: size.width, height: size.height } };
      return {
        jpeg: {
          path: 'jpeg',
          media: jpegMedia(new FramePool(b.sdkJpegs), { video, ...recording }),
        },
        h264: { path: 'h264', media: chunkMedia(phasesAt(size)) },
      };
    };

    // The service, on a real Postgres.
    progress('starting Postgres');
    const pg = new PgProcess(join(root, 'postgres'), 0);
    cleanup.add('postgres', () => pg.stop());
    const databaseUrl = await pg.start();
    const db = new Pool({ connectionString: databaseUrl, max: 2 });
    cleanup.add('database pool', () => db.end());
    const serviceEnv = { ...serviceEnvBase, DATABASE_URL: databaseUrl };
    progress('starting the service (defaults: decode check on)');
    const first = await startService(serviceEnv, root, secret, cleanup);

    // (b) CPU per recorded frame.
    const cpu: Array<{
      width: number;
      height: number;
      sessions: number;
      jpeg: Awaited<ReturnType<typeof cpuTrial>>;
      h264: Awaited<ReturnType<typeof cpuTrial>>;
      idleMsPerSecond: number;
      ratio: { live: number | null; liveNetOfIdle: number | null; total: number | null };
    }> = [];
    for (const size of settings.cpuSizes) {
      const sessions = Math.max(
        2,
        Math.round((settings.cpuSessions * CPU_REFERENCE_PIXELS) / (size.width * size.height)),
      );
      const media = mediaAt(size);
      progress(`(b) ${key(size)}: ${sessions} sessions per path for ${settings.sessionSeconds} s`);
      await waitForQuiet(settings.quietWaitSeconds, QUIET_BUSY_PCT, progress);
      await checksDrained(db, settings.checkWaitSeconds);
      const idleMsPerSecond = await idleCpuMsPerSecond(first, IDLE_SECONDS);
      progress(`  the idle service stack: ${idleMsPerSecond} ms of CPU per second`);
      const jpeg = await cpuTrial(media.jpeg, sessions, first, db, settings, idleMsPerSecond, warn);
      const h264 = await cpuTrial(media.h264, sessions, first, db, settings, idleMsPerSecond, warn);
      for (const trial of [jpeg, h264]) {
        if (!trial.keptUp) {
          // The CPU per recorded frame holds (every frame is in a recording); the load was more
          // than the machine had to spare then.
          warn(`(b) ${trial.path} ${key(size)} did not keep up: ${trial.why.join('; ')}`);
        }
        if (trial.recordings.ready !== sessions || trial.recordedFrames !== trial.sentFrames) {
          failures.push(
            `(b) ${trial.path} ${key(size)}: ${trial.recordings.ready} of ${sessions} recordings ` +
              `ready, ${trial.recordedFrames} of ${trial.sentFrames} frames recorded`,
          );
        }
        if (trial.recordings.failed > 0) {
          failures.push(
            `(b) ${trial.path} ${key(size)}: ${trial.recordings.failed} recordings failed their decode check`,
          );
        }
      }
      const ratioOf = (a: number | null, b: number | null): number | null =>
        a !== null && b !== null && b > 0 ? round(a / b, 1) : null;
      cpu.push({
        ...size,
        sessions,
        jpeg,
        h264,
        idleMsPerSecond,
        ratio: {
          live: ratioOf(jpeg.cpuMsPerFrame.live.all, h264.cpuMsPerFrame.live.all),
          liveNetOfIdle: ratioOf(
            jpeg.cpuMsPerFrame.liveNetOfIdle,
            h264.cpuMsPerFrame.liveNetOfIdle,
          ),
          total: ratioOf(jpeg.cpuMsPerFrame.total, h264.cpuMsPerFrame.total),
        },
      });
    }
    const firstStop = await first.stop();
    progress(`service stopped in ${firstStop.ms} ms (exit ${firstStop.code})`);
    if (firstStop.code !== 0) {
      failures.push(
        `the service exited with ${firstStop.code}${firstStop.killed ? ' (killed)' : ''}`,
      );
    }
    const firstLogs = logProblems(`${first.service.stdout}\n${first.service.stderr}`);

    // (c) Sessions per core, decode check off.
    const searchSize = settings.sizes[0];
    progress('restarting the service with RECORDING_DECODE_CHECK=false');
    const second = await startService(
      { ...serviceEnv, RECORDING_DECODE_CHECK: 'false' },
      root,
      secret,
      cleanup,
    );
    const cpuAtSearchSize = cpu.find((c) => key(c) === key(searchSize));
    const estimate = (ms: number | null | undefined): number | null =>
      ms ? (nproc * 1000) / (ms * SCENE_FPS) : null;
    const media = mediaAt(searchSize);
    const jpegStart =
      settings.jpegStartSessions ??
      0.9 * (estimate(cpuAtSearchSize?.jpeg.cpuMsPerFrame.liveNetOfIdle) ?? 20 * nproc);
    const jpegSearch = await searchSessions(media.jpeg, jpegStart, second, settings, nproc, warn);
    const passthroughStart =
      settings.passthroughStartSessions ??
      0.8 * (estimate(cpuAtSearchSize?.h264.cpuMsPerFrame.liveNetOfIdle) ?? 200 * nproc);
    const passthroughSearch = await searchSessions(
      media.h264,
      passthroughStart,
      second,
      settings,
      nproc,
      warn,
    );
    const secondStop = await second.stop();
    progress(`service stopped in ${secondStop.ms} ms (exit ${secondStop.code})`);
    if (secondStop.code !== 0) {
      failures.push(
        `the service exited with ${secondStop.code}${secondStop.killed ? ' (killed)' : ''}`,
      );
    }
    if (jpegSearch.sessions === 0 || passthroughSearch.sessions === 0) {
      failures.push('(c) a path kept up with no trial');
    }
    const sessionsRatio =
      jpegSearch.sessions > 0 ? round(passthroughSearch.sessions / jpegSearch.sessions, 1) : null;

    const primary = bandwidth.get(key(settings.sizes[0]));
    const primaryH264 = primary?.matches.find((m) => m.codec === 'h264');
    const bandwidthRatio = primaryH264?.atLeastJpeg.ratio ?? null;
    const bandwidthRatioLoose = primaryH264?.withinTolerance.ratio ?? null;
    const cpuFirst = cpu.find((c) => key(c) === key(settings.sizes[0]));
    const cpuRatio = cpuFirst?.ratio.live ?? null;
    const cpuRatioNet = cpuFirst?.ratio.liveNetOfIdle ?? null;
    // Each path at the largest load it kept up with in (c): fixed costs weigh least there.
    const jpegAtN = jpegSearch.atN?.cpuMsPerFrame?.all ?? null;
    const passthroughAtN = passthroughSearch.atN?.cpuMsPerFrame?.all ?? null;
    const cpuRatioAtN =
      jpegAtN !== null && passthroughAtN !== null && passthroughAtN > 0
        ? round(jpegAtN / passthroughAtN, 1)
        : null;
    const measuredWeight =
      cpuAtSearchSize?.jpeg.cpuMsPerFrame.live.all && cpuAtSearchSize.h264.cpuMsPerFrame.live.all
        ? round(
            cpuAtSearchSize.h264.cpuMsPerFrame.live.all /
              cpuAtSearchSize.jpeg.cpuMsPerFrame.live.all,
            3,
          )
        : null;

    const result = {
      bench: 'codecs',
      date: new Date().toISOString(),
      machine: machineInfo(),
      source: sourceState(),
      ffmpeg: { path: ffmpegPath, version: ffmpegVersion(ffmpegPath) },
      material: [...scenes.values()].map((s) => ({
        width: s.width,
        height: s.height,
        fps: s.fps,
        frames: s.frames,
        yuvPath: s.yuvPath,
        builtThisRun: s.built,
        recipe: s.recipe,
      })),
      settings: {
        ...settings,
        dataDir,
        dataDirFilesystem: filesystemOf(root),
        jpegQuality: JPEG_QUALITY,
        ssimTolerance: SSIM_TOLERANCE,
        maxAckLagFrames: MAX_ACK_LAG_FRAMES,
        service: {
          RECORDING_PRESET: serviceConfig.RECORDING_PRESET,
          RECORDING_CRF: serviceConfig.RECORDING_CRF,
          RECORDING_MAX_ENCODERS: serviceEnvBase.RECORDING_MAX_ENCODERS,
          RECORDING_CAPACITY_FPS: serviceEnvBase.RECORDING_CAPACITY_FPS,
          VIDEO_KEYFRAME_INTERVAL_MS: serviceConfig.VIDEO_KEYFRAME_INTERVAL_MS,
          ACK_INTERVAL_MS: serviceConfig.ACK_INTERVAL_MS,
          ACK_MAX_FRAMES: serviceConfig.ACK_MAX_FRAMES,
        },
      },
      bandwidth: {
        what:
          'payload bytes per frame (the 12-byte media header not counted): JPEGs as the SDK ' +
          'sends them, and H.264/VP9 as a realtime browser encoder sends them at the lowest ' +
          'bitrate whose SSIM against the camera is at least that of the recording framegate makes ' +
          `from the quality-70 JPEGs (atLeastJpeg), and at least that minus ${SSIM_TOLERANCE} ` +
          '(withinTolerance); ratio = JPEG q70 bytes / codec bytes',
        sizes: [...bandwidth.entries()]
          .filter(([k]) => settings.sizes.some((s) => key(s) === k))
          .map(([k, b]) => ({
            size: k,
            jpeg: b.jpeg,
            jpegRecordingArgs: b.jpegRecordingArgs,
            target: { quality: JPEG_QUALITY, recordingSsim: b.reference.recordingSsim },
            codecs: b.matches.map(({ encoded: _encoded, ...m }) => m),
          })),
      },
      serverCpu: {
        what:
          'CPU ms per recorded frame of the service stack (its Node process, ffmpeg children, ' +
          'Postgres) with N sessions at a real 10 fps: live = while streaming; afterStreaming = ' +
          'from the end of streaming until every recording is ready and decode-checked; ' +
          'liveNetOfIdle = live less what the idle service (polled the same way) used meanwhile; ' +
          'ratio = JPEG path / pass-through',
        sizes: cpu,
      },
      sessionsPerCore: {
        what:
          'largest N of real-time 10 fps sessions whose recorders keep up and whose acks stay ' +
          `within ${MAX_ACK_LAG_FRAMES} frames, decode check off, at ${key(searchSize)}; ` +
          'per core = N / cores (the load generator runs on the same cores)',
        size: key(searchSize),
        jpeg: jpegSearch,
        passthrough: passthroughSearch,
        ratio: sessionsRatio,
        withDecodeCheck: {
          what:
            'sessions the CPU allows per core when every frame also pays its decode check: ' +
            '1000 / (total ms per frame of (b) × 10 fps)',
          jpeg: perCoreAllowed(cpuAtSearchSize?.jpeg.cpuMsPerFrame.total),
          passthrough: perCoreAllowed(cpuAtSearchSize?.h264.cpuMsPerFrame.total),
        },
        admissionWeight: { configured: PASSTHROUGH_FRAME_WEIGHT, measured: measuredWeight },
      },
      aims: {
        bandwidth: {
          aim: '>= 4x fewer bytes (H.264, first size)',
          value: bandwidthRatio,
          met: bandwidthRatio === null ? null : bandwidthRatio >= 4,
          whatValue: 'H.264 at the lowest bitrate with SSIM >= the JPEG recording',
          withinTolerance: {
            what: `H.264 at the lowest bitrate with SSIM >= the JPEG recording's - ${SSIM_TOLERANCE}`,
            value: bandwidthRatioLoose,
            met: bandwidthRatioLoose === null ? null : bandwidthRatioLoose >= 4,
          },
        },
        serverCpu: {
          aim: '>= 20x less CPU per recorded frame (live, first CPU size)',
          value: cpuRatio,
          met: cpuRatio === null ? null : cpuRatio >= 20,
          netOfIdle: { value: cpuRatioNet, met: cpuRatioNet === null ? null : cpuRatioNet >= 20 },
          atSearchN: {
            what: "each path's CPU per frame at the largest load it kept up with in (c)",
            value: cpuRatioAtN,
            met: cpuRatioAtN === null ? null : cpuRatioAtN >= 20,
          },
        },
        sessionsPerCore: {
          aim: '>= 10x the JPEG path',
          value: sessionsRatio,
          met: sessionsRatio === null ? null : sessionsRatio >= 10,
          capped: passthroughSearch.bracket.keptUp >= settings.maxSessions,
        },
      },
      serviceLogs: {
        withDecodeCheck: firstLogs,
        withoutDecodeCheck: logProblems(`${second.service.stdout}\n${second.service.stderr}`),
      },
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

function perCoreAllowed(msPerFrame: number | null | undefined): number | null {
  return msPerFrame ? round(1000 / (msPerFrame * SCENE_FPS), 1) : null;
}

function key(size: Size): string {
  return `${size.width}x${size.height}`;
}

function uniqueSizes(sizes: Size[]): Size[] {
  return sizes.filter((s, i) => sizes.findIndex((t) => key(t) === key(s)) === i);
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    progress(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
