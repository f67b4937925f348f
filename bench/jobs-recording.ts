/**
 * The second half of bench:jobs: live recording while media jobs run. The figure is
 * bench:recording's (b), the largest number N of real-time sessions (10 fps 640×480, one client
 * each) whose recorders keep up, found by a short search on the service (its build,
 * dist/src/main.js, in its own process, on a real Postgres), once on its own and once with a batch of media jobs running beside
 * the sessions, in the same run. Aim: N with jobs ≥ 0.9 × N without: live recording comes first.
 *
 * The jobs are the worst case the product allows: MEDIA_JOB_CONCURRENCY at one job per core (the
 * default is one per two), each a transcode of a 60 s grainy 640×480 clip to 2560×1920 H.265
 * (slow enough to outlast a trial even on an idle machine), submitted through
 * the API and running before the sessions open (the budget starts no job while sessions already
 * use the capacity; sessions that arrive while jobs run are what this measures). A trial counts
 * only if jobs were still running when its streaming ended; the jobs left are cancelled after it.
 *
 * Env (optional): BENCH_SESSION_SECONDS (20), BENCH_JOB_TRIALS (4: each search),
 * BENCH_START_SESSIONS (15 per core), BENCH_FRAME_BYTES (25000), BENCH_DISTINCT_FRAMES (50),
 * BENCH_QUIET_WAIT_SECONDS (20).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ffmpeg } from '../test/support/job-media';
import { PgProcess } from '../test/support/pg-process';
import { ServiceProcess } from '../test/support/service-process';
import { hsToken } from '../test/support/tokens';
import { waitForQuiet } from './support/recording-cpu';
import { FramePool, recordingFrames } from './support/recording-frames';
import {
  jpegMedia,
  pacedTrial,
  type PacedTrialResult,
  settle,
  sleep,
} from './support/recording-load';
import { describe, progressFor } from './support/run-info';

const progress = progressFor('jobs');
const CHANNEL = 'bench';
const QUIET_BUSY_PCT = 15;
/** Where the search for N starts without a hint: bench:recording kept 19 per core on 2 cores. */
const START_SESSIONS_PER_CORE = 15;
/** The aim: N with jobs at this share of N without, or more. */
const KEPT_UP_AIM = 0.9;
/** Seconds of the clip each job transcodes: with its grain, long enough to outlast a trial. */
const CLIP_SECONDS = 60;
/** Jobs submitted per trial, per running slot: some wait in the queue behind the running ones. */
const QUEUED_PER_SLOT = 2;
const JOB_START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;

interface Settings {
  sessionSeconds: number;
  trials: number;
  startSessions: number;
  frameBytes: number;
  distinctFrames: number;
  quietWaitSeconds: number;
}

function settingsFromEnv(env: NodeJS.ProcessEnv, cores: number): Settings {
  const num = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    const value = raw === undefined || raw === '' ? fallback : Number(raw);
    if (!Number.isFinite(value) || value < min || value > max) {
      throw new Error(`${name} must be a number in [${min}, ${max}], got ${raw}`);
    }
    return value;
  };
  return {
    sessionSeconds: num('BENCH_SESSION_SECONDS', 20, 6, 600),
    trials: Math.floor(num('BENCH_JOB_TRIALS', 4, 1, 20)),
    startSessions: Math.floor(
      num('BENCH_START_SESSIONS', START_SESSIONS_PER_CORE * cores, 1, 1000),
    ),
    frameBytes: Math.floor(num('BENCH_FRAME_BYTES', 25_000, 2_000, 500_000)),
    distinctFrames: Math.floor(num('BENCH_DISTINCT_FRAMES', 50, 2, 500)),
    quietWaitSeconds: num('BENCH_QUIET_WAIT_SECONDS', 20, 0, 600),
  };
}

/** One trial of the search: N sessions, with or without jobs, and what the jobs did meanwhile. */
interface Trial {
  sessions: number;
  withJobs: boolean;
  keptUp: boolean;
  why: string[];
  sentFps: number;
  maxQueuedTail: number;
  closeP95Ms: number;
  /** Jobs running when the sessions started streaming and when they stopped (with jobs). */
  jobsRunningAtStart: number | null;
  jobsRunningAtEnd: number | null;
  /** Progress (%) the running jobs made during the streaming, summed. */
  jobProgressDuringTrial: number | null;
}

interface JobRecord {
  id: string;
  state: string;
  progress: number;
}

/** The section bench/jobs.ts runs: see the file's comment. */
export async function recordingWithJobs(env: { root: string }): Promise<Record<string, unknown>> {
  const cores = availableParallelism();
  const settings = settingsFromEnv(process.env, cores);
  const root = join(env.root, 'recording-with-jobs');
  const stops: Array<() => Promise<unknown>> = [];
  try {
    const frames = await recordingFrames(settings.distinctFrames, settings.frameBytes);
    const pool = new FramePool(frames.jpegs);
    progress(`making a ${CLIP_SECONDS} s 640×480 clip for the jobs`);
    await makeClip(root);
    const clip = readFileSync(join(root, 'clip.mp4'));

    const pg = new PgProcess(join(root, 'postgres'), 0);
    stops.push(() => pg.stop());
    const databaseUrl = await pg.start();
    const secret = randomBytes(32).toString('hex');
    const concurrency = cores;
    const service = new ServiceProcess(
      {
        NODE_ENV: 'production',
        NODE_ID: 'bench-jobs',
        HOST: '127.0.0.1',
        PORT: '0',
        // `listening()` reads the `framegate listening` line, logged at info.
        LOG_LEVEL: 'info',
        DATA_DIR: join(root, 'data'),
        DATABASE_URL: databaseUrl,
        AUTH_JWT_SECRET: secret,
        QUOTA_NODE_MAX_CONNECTIONS: '100000',
        QUOTA_CHANNEL_MAX_CONNECTIONS: '100000',
        QUOTA_HANDSHAKES_PER_MIN: '100000',
        QUOTA_IP_HANDSHAKES_PER_MIN: '100000',
        STREAM_MAX_FPS: '1000',
        STREAM_MAX_KBPS: '1000000',
        // Neither the encoder cap nor admission may be what limits N (as in bench:recording).
        RECORDING_MAX_ENCODERS: '1000',
        RECORDING_CAPACITY_FPS: '1000000',
        MEDIA_JOB_CONCURRENCY: String(concurrency),
        MEDIA_UPLOAD_MAX_BYTES: String(512 * 1024 * 1024),
      },
      root,
    );
    stops.push(() => stopService(service));
    const baseUrl = await service.listening(120_000);
    progress(`service listening at ${baseUrl}`);
    const adminToken = hsToken({ sub: 'bench-admin', channel: CHANNEL, scope: 'admin', secret });
    const jobToken = hsToken({
      sub: 'bench-jobs',
      channel: CHANNEL,
      scope: 'media:process',
      secret,
    });
    let tokenSerial = 0;
    const tokenFor = (): string =>
      hsToken({ sub: `bench-${tokenSerial++}`, channel: CHANNEL, scope: 'stream:publish', secret });

    const trials: Trial[] = [];
    const runTrial = async (sessions: number, withJobs: boolean): Promise<Trial> => {
      await waitForQuiet(settings.quietWaitSeconds, QUIET_BUSY_PCT, progress);
      let jobIds: string[] = [];
      if (withJobs) {
        jobIds = await submitBatch(baseUrl, jobToken, clip, concurrency * QUEUED_PER_SLOT);
        await waitForRunning(baseUrl, jobToken, jobIds, concurrency);
      }
      progress(
        `${withJobs ? 'with' : 'without'} jobs: ${sessions} sessions for ${settings.sessionSeconds} s`,
      );
      let atStart: JobRecord[] = [];
      let atEnd: JobRecord[] = [];
      const result: PacedTrialResult = await pacedTrial({
        baseUrl,
        sessions,
        seconds: settings.sessionSeconds,
        media: jpegMedia(pool),
        tokenFor,
        adminToken,
        onStreaming: (edge) => {
          if (!withJobs) {
            return;
          }
          // Snapshots of the jobs at both edges of the streaming, taken without blocking it.
          void jobsOf(baseUrl, jobToken, jobIds).then((jobs) => {
            if (edge === 'start') {
              atStart = jobs;
            } else {
              atEnd = jobs;
            }
          });
        },
      });
      let trial: Trial = {
        sessions,
        withJobs,
        keptUp: result.keptUp,
        why: result.why,
        sentFps: result.sentFps,
        maxQueuedTail: result.backlog.maxQueuedTail,
        closeP95Ms: result.close.ms.p95,
        jobsRunningAtStart: null,
        jobsRunningAtEnd: null,
        jobProgressDuringTrial: null,
      };
      if (withJobs) {
        // The end snapshot was asked for as streaming stopped; give it time to land.
        const deadline = performance.now() + 10_000;
        while (atEnd.length === 0 && performance.now() < deadline) {
          await sleep(100);
        }
        const running = (jobs: JobRecord[]) => jobs.filter((j) => j.state === 'running');
        const before = new Map(atStart.map((j) => [j.id, j.progress]));
        trial = {
          ...trial,
          jobsRunningAtStart: running(atStart).length,
          jobsRunningAtEnd: running(atEnd).length,
          jobProgressDuringTrial: Math.round(
            atEnd.reduce((sum, j) => sum + Math.max(0, j.progress - (before.get(j.id) ?? 0)), 0),
          ),
        };
        if (trial.jobsRunningAtEnd === 0) {
          throw new Error('the jobs ended before the trial did: make the clip longer');
        }
        await cancelAll(baseUrl, jobToken, jobIds);
      }
      await settle(baseUrl, adminToken);
      progress(
        `  ${trial.keptUp ? 'kept up' : `did not keep up (${trial.why.join('; ')})`}` +
          (withJobs
            ? `; jobs running ${trial.jobsRunningAtStart} → ${trial.jobsRunningAtEnd}, ` +
              `progress made ${trial.jobProgressDuringTrial}%`
            : ''),
      );
      trials.push(trial);
      return trial;
    };

    const without = await search(settings.startSessions, settings.trials, (n) =>
      runTrial(n, false),
    );
    progress(`without jobs: ${without} sessions kept up`);
    const withJobs = await search(Math.max(1, without), settings.trials, (n) => runTrial(n, true));
    progress(`with jobs: ${withJobs} sessions kept up`);
    const ratio = without > 0 ? Math.round((withJobs / without) * 100) / 100 : null;
    return {
      settings,
      jobs: {
        concurrency,
        perTrial: concurrency * QUEUED_PER_SLOT,
        each: `transcode of a ${CLIP_SECONDS} s grainy 640×480 H.264 clip to 2560×1920 H.265`,
        cpuClass: 'background (SCHED_IDLE, nice 19)',
      },
      sessionsKeptUpWithoutJobs: without,
      sessionsKeptUpWithJobs: withJobs,
      ratio,
      aim: KEPT_UP_AIM,
      met: ratio !== null && ratio >= KEPT_UP_AIM,
      trials,
    };
  } catch (err) {
    progress(`recording with jobs failed: ${describe(err)}`);
    throw err;
  } finally {
    for (const stop of stops.reverse()) {
      await stop().catch((err: unknown) => progress(`stopping: ${describe(err)}`));
    }
  }
}

/**
 * The largest N that keeps up: up by a tenth while trials pass, down while they fail, then
 * bisecting between the best pass and the least failure, within `maxTrials`.
 */
async function search(
  start: number,
  maxTrials: number,
  trial: (n: number) => Promise<Trial>,
): Promise<number> {
  let passMax = 0;
  let failMin = Number.POSITIVE_INFINITY;
  let n = start;
  const step = Math.max(1, Math.round(0.1 * start));
  for (let t = 0; t < maxTrials; t++) {
    const result = await trial(n);
    if (result.keptUp) {
      passMax = Math.max(passMax, n);
    } else {
      failMin = Math.min(failMin, n);
    }
    let next: number;
    if (failMin === Number.POSITIVE_INFINITY) {
      next = n + step;
    } else if (passMax === 0) {
      next = Math.max(1, n - step);
    } else {
      next = Math.floor((passMax + failMin) / 2);
    }
    if (next <= passMax || next >= failMin) {
      break;
    }
    n = next;
  }
  return passMax;
}

/**
 * The jobs' input: a moving test pattern with temporal grain (a camera's noise), which costs an
 * encoder what real footage does; a bare test pattern compresses too easily to keep x265 busy.
 */
async function makeClip(root: string): Promise<void> {
  mkdirSync(root, { recursive: true });
  await ffmpeg(root, [
    '-f',
    'lavfi',
    '-i',
    `testsrc2=size=640x480:rate=25:duration=${CLIP_SECONDS},noise=alls=12:allf=t`,
    '-c:v',
    'libx264',
    '-preset',
    'veryfast',
    '-crf',
    '26',
    '-pix_fmt',
    'yuv420p',
    'clip.mp4',
  ]);
}

async function submitBatch(
  baseUrl: string,
  token: string,
  clip: Buffer,
  count: number,
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const body = new FormData();
    body.append(
      'spec',
      JSON.stringify({
        type: 'transcode',
        input: { upload: 'clip' },
        codec: 'h265',
        width: 2560,
        height: 1920,
      }),
    );
    body.append('clip', new Blob([clip]), 'clip.mp4');
    const res = await fetch(`${baseUrl}/v1/media/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body,
    });
    if (res.status !== 202) {
      throw new Error(`job submission answered ${res.status}: ${await res.text()}`);
    }
    ids.push(((await res.json()) as { id: string }).id);
  }
  return ids;
}

async function jobsOf(baseUrl: string, token: string, ids: string[]): Promise<JobRecord[]> {
  return Promise.all(
    ids.map(async (id) => {
      const res = await fetch(`${baseUrl}/v1/media/jobs/${id}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      return (await res.json()) as JobRecord;
    }),
  );
}

async function waitForRunning(
  baseUrl: string,
  token: string,
  ids: string[],
  count: number,
): Promise<void> {
  const deadline = performance.now() + JOB_START_TIMEOUT_MS;
  for (;;) {
    const jobs = await jobsOf(baseUrl, token, ids);
    if (jobs.filter((j) => j.state === 'running' && j.progress > 0).length >= count) {
      return;
    }
    if (performance.now() > deadline) {
      throw new Error(
        `fewer than ${count} jobs running after ${JOB_START_TIMEOUT_MS} ms: ` +
          jobs.map((j) => `${j.state} ${j.progress}%`).join(', '),
      );
    }
    await sleep(500);
  }
}

async function cancelAll(baseUrl: string, token: string, ids: string[]): Promise<void> {
  for (const id of ids) {
    const res = await fetch(`${baseUrl}/v1/media/jobs/${id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    });
    // 409: it completed meanwhile; nothing to cancel.
    if (res.status !== 200 && res.status !== 409) {
      throw new Error(`cancelling job ${id} answered ${res.status}`);
    }
  }
}

async function stopService(service: ServiceProcess): Promise<void> {
  const timer = setTimeout(() => service.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  try {
    await service.stop();
  } finally {
    clearTimeout(timer);
  }
}
