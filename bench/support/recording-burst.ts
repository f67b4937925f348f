/**
 * bench:recording's burst case (issue 16): a client that was offline re-sends its capture at once
 * (the SDK's outbox does), then closes. Measured: `close` sent → `closed` with the recording
 * `ready`. Baselines from the same run: the same session sent in real time, and bare ffmpeg (the
 * service's own argument list) encoding the same JPEGs from a file as fast as it can.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { spawn } from 'node:child_process';
import { AccessUnitSplitter } from '../../src/media/h264-stream';
import { encodeMediaMessage, Track } from '../../src/protocol/media-header';
import { StreamClient } from '../../test/support/stream-client';
import { type CpuFigures, CpuWindow, waitForQuiet } from './recording-cpu';
import type { ChildSet } from './recording-ffmpeg';
import { closeTimed, type Percentiles, percentiles, round, sleep } from './recording-load';

/** Capture interval of the burst's frames: 10 fps, as the camera took them. */
const CAPTURE_INTERVAL_MS = 100;
/** How long a `close` may take before the run counts as failed. */
const CLOSE_TIMEOUT_MS = 120_000;
/** Above this CPU (% of one core) used by processes not ours during a session, it is flagged. */
const OTHER_CPU_WARN_PCT = 25;

export interface BurstSettings {
  /** Frames per session (300: 30 s of capture at 10 fps). */
  frames: number;
  /** Burst sessions, one after the other. */
  reps: number;
  /** Real-time sessions (each lasts frames / 10 s), one after the other: the baseline. */
  realtimeReps: number;
  /** Frames the burst client keeps unacknowledged at most: its ack window. */
  window: number;
  quietWaitSeconds: number;
  quietBusyPct: number;
}

export interface BurstSession {
  sessionId: string;
  /** First frame sent → last frame acknowledged. */
  sendMs: number;
  /** Frames stored but not yet out of the encoder when `close` was sent (admin API). */
  backlogAtClose: number | null;
  closeMs: number;
  status: string;
  frames: number;
  durationMs: number | null;
  cpu: CpuFigures;
}

export interface BurstResult {
  what: string;
  settings: BurstSettings & { width: number; height: number; jpegMeanBytes: number };
  burst: { closeMs: Percentiles; sendMs: Percentiles; sessions: BurstSession[] };
  realtime: { closeMs: Percentiles; sessions: BurstSession[] };
  floor: {
    what: string;
    oneProcessMs: Percentiles;
    /** The frames cut in `nproc` consecutive parts, one ffmpeg each, in parallel. */
    parallelMs: Percentiles;
    /** CPU others used during each kept run, % of one core. */
    otherCpuPct: number[];
    processes: number;
    args: string[];
  };
  aim: { what: string; value: number; met: boolean | null };
  failures: string[];
  warnings: string[];
}

export interface BurstContext {
  baseUrl: string;
  adminToken: string;
  tokenFor: (i: number) => string;
  jpegs: Buffer[];
  width: number;
  height: number;
  ffmpegPath: string;
  /** The service encoder's arguments (input `pipe:0`, output `pipe:1`). */
  encoderArgs: string[];
  children: ChildSet;
  dir: string;
  progress: (line: string) => void;
}

export function burstSettingsFromEnv(env: NodeJS.ProcessEnv): BurstSettings {
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    const value = raw === undefined || raw === '' ? fallback : Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new Error(`${name} must be an integer in [${min}, ${max}], got ${raw}`);
    }
    return value;
  };
  return {
    frames: int('BENCH_BURST_FRAMES', 300, 20, 100_000),
    reps: int('BENCH_BURST_REPS', 7, 1, 100),
    realtimeReps: int('BENCH_BURST_REALTIME_REPS', 3, 1, 100),
    window: int('BENCH_BURST_WINDOW', 100, 1, 100_000),
    quietWaitSeconds: int('BENCH_QUIET_WAIT_SECONDS', 20, 0, 600),
    quietBusyPct: 15,
  };
}

export async function burstCase(ctx: BurstContext, settings: BurstSettings): Promise<BurstResult> {
  const failures: string[] = [];
  const warnings: string[] = [];
  const noteCpu = (what: string, cpu: CpuFigures): void => {
    if (cpu.otherPct > OTHER_CPU_WARN_PCT) {
      warnings.push(`${what}: processes not ours used ${cpu.otherPct}% of a core`);
    }
  };
  const session = async (i: number, realtime: boolean): Promise<BurstSession | null> => {
    await waitForQuiet(settings.quietWaitSeconds, settings.quietBusyPct, ctx.progress);
    try {
      const s = await oneSession(ctx, settings, ctx.tokenFor(i), realtime);
      noteCpu(`${realtime ? 'real-time' : 'burst'} session ${s.sessionId}`, s.cpu);
      ctx.progress(
        `  ${realtime ? 'real time' : 'burst'}: sent in ${s.sendMs} ms, backlog at close ` +
          `${s.backlogAtClose ?? '?'}, close → ${s.status} in ${s.closeMs} ms ` +
          `(${s.frames} frames, ${s.durationMs} ms; others ${s.cpu.otherPct}%)`,
      );
      if (s.status !== 'ready' || s.frames !== settings.frames) {
        failures.push(`session ${s.sessionId}: ${s.status} with ${s.frames} frames`);
      }
      const expectMs = settings.frames * CAPTURE_INTERVAL_MS;
      if (s.durationMs !== expectMs) {
        failures.push(`session ${s.sessionId}: duration ${s.durationMs} ms, not ${expectMs}`);
      }
      return s;
    } catch (err) {
      failures.push(`session ${i}: ${err instanceof Error ? err.message : String(err)}`);
      return null;
    }
  };

  ctx.progress(
    `(d) burst: ${settings.reps} sessions of ${settings.frames} frames sent as fast as a window ` +
      `of ${settings.window} unacknowledged frames allows, then close`,
  );
  const bursts: BurstSession[] = [];
  for (let i = 0; i < settings.reps; i++) {
    const s = await session(2_000_000 + i, false);
    if (s) {
      bursts.push(s);
    }
  }
  ctx.progress(`(d) baseline: ${settings.realtimeReps} sessions sent in real time`);
  const realtime: BurstSession[] = [];
  for (let i = 0; i < settings.realtimeReps; i++) {
    const s = await session(3_000_000 + i, true);
    if (s) {
      realtime.push(s);
    }
  }

  // The floor: the same JPEGs from a file, the service's argument list, nothing else running.
  const input = join(ctx.dir, 'burst-input.mjpeg');
  const sequence = Array.from({ length: settings.frames }, (_, i) => frameJpeg(ctx.jpegs, i));
  writeFileSync(input, Buffer.concat(sequence));
  const processes = availableParallelism();
  const parts: string[] = [];
  for (let p = 0; p < processes; p++) {
    const part = join(ctx.dir, `burst-input-${p}.mjpeg`);
    const from = Math.floor((p * settings.frames) / processes);
    const to = Math.floor(((p + 1) * settings.frames) / processes);
    writeFileSync(part, Buffer.concat(sequence.slice(from, to)));
    parts.push(part);
  }
  const one: number[] = [];
  const parallel: number[] = [];
  const floorOtherPct: number[] = [];
  for (let i = 0; i < settings.reps; i++) {
    // A run others disturbed (they share the cores it measures) is done once more.
    for (let attempt = 0; attempt < 2; attempt++) {
      await waitForQuiet(settings.quietWaitSeconds, settings.quietBusyPct, ctx.progress);
      const cpu = new CpuWindow();
      const run = await encodeFile(ctx, input);
      if (run.accessUnits !== settings.frames) {
        failures.push(`bare ffmpeg: ${run.accessUnits} access units for ${settings.frames} JPEGs`);
      }
      const t0 = performance.now();
      await Promise.all(parts.map((part) => encodeFile(ctx, part)));
      const parallelMs = round(performance.now() - t0, 1);
      const figures = cpu.end();
      const otherPct = figures.otherPct;
      if (otherPct <= OTHER_CPU_WARN_PCT || attempt === 1) {
        one.push(run.ms);
        parallel.push(parallelMs);
        floorOtherPct.push(otherPct);
        noteCpu('floor', figures);
        break;
      }
      ctx.progress(`  floor run disturbed (others used ${otherPct}% of a core): again`);
    }
  }
  ctx.progress(
    `(d) floor: one ffmpeg ${percentiles(one).p50} ms, ${processes} in parallel ` +
      `${percentiles(parallel).p50} ms (medians)`,
  );
  const burstClose = percentiles(bursts.map((s) => s.closeMs));
  const aimMs = 500;
  return {
    what:
      '`close` sent → `closed` with the recording ready, after the session sent its frames as ' +
      'fast as its ack window allowed; baselines: the same session sent in real time, and bare ' +
      'ffmpeg with the service arguments encoding the same JPEGs from a file',
    settings: {
      ...settings,
      width: ctx.width,
      height: ctx.height,
      jpegMeanBytes: Math.round(
        sequence.reduce((sum, jpeg) => sum + jpeg.length, 0) / sequence.length,
      ),
    },
    burst: {
      closeMs: burstClose,
      sendMs: percentiles(bursts.map((s) => s.sendMs)),
      sessions: bursts,
    },
    realtime: { closeMs: percentiles(realtime.map((s) => s.closeMs)), sessions: realtime },
    floor: {
      what: `${settings.frames} JPEGs from a file, the service's encoder arguments, spawn → exit`,
      oneProcessMs: percentiles(one),
      parallelMs: percentiles(parallel),
      otherCpuPct: floorOtherPct,
      processes,
      args: fileArgs(ctx.encoderArgs, '<file>'),
    },
    aim: {
      what: 'burst close → ready p95 <= 500 ms on an idle node',
      value: burstClose.p95,
      met: bursts.length === 0 ? null : burstClose.p95 <= aimMs,
    },
    failures,
    warnings,
  };
}

/** The burst's frame `i`: the material's JPEGs in order, cycling (the scene is a closed loop). */
function frameJpeg(jpegs: Buffer[], i: number): Buffer {
  return jpegs[i % jpegs.length];
}

async function oneSession(
  ctx: BurstContext,
  settings: BurstSettings,
  token: string,
  realtime: boolean,
): Promise<BurstSession> {
  const client = await StreamClient.connect(ctx.baseUrl, { token });
  try {
    const { sessionId } = await client.open({
      video: { width: ctx.width, height: ctx.height, fps: 1000 / CAPTURE_INTERVAL_MS },
    });
    const messages = Array.from({ length: settings.frames }, (_, i) =>
      encodeMediaMessage(Track.Video, i + 1, i * CAPTURE_INTERVAL_MS, frameJpeg(ctx.jpegs, i)),
    );
    const cpu = new CpuWindow();
    const started = performance.now();
    for (let seq = 1; seq <= settings.frames; seq++) {
      if (realtime) {
        await sleep(started + (seq - 1) * CAPTURE_INTERVAL_MS - performance.now());
      } else {
        while (seq - client.maxAck > settings.window) {
          await client.next('ack', 30_000);
        }
      }
      client.ws.send(messages[seq - 1]);
    }
    await client.acksUntil(settings.frames, 30_000);
    const sendMs = round(performance.now() - started, 1);
    const { backlogAtClose, closed, closeMs } = await closeTimed(
      client,
      sessionId,
      ctx.baseUrl,
      ctx.adminToken,
      CLOSE_TIMEOUT_MS,
    );
    return {
      sessionId,
      sendMs,
      backlogAtClose,
      closeMs,
      status: closed.recording.status,
      frames: closed.frames,
      durationMs: closed.recording.durationMs,
      cpu: cpu.end(),
    };
  } finally {
    client.ws.terminate();
  }
}

/** The service's arguments reading a file of concatenated JPEGs instead of stdin. */
function fileArgs(args: string[], path: string): string[] {
  const i = args.indexOf('pipe:0');
  if (i === -1) {
    throw new Error('the encoder arguments read no pipe:0');
  }
  return [...args.slice(0, i), path, ...args.slice(i + 1)];
}

/** Runs the service's encoder over a file; spawn → exit, and the access units it wrote. */
async function encodeFile(
  ctx: BurstContext,
  path: string,
): Promise<{ ms: number; accessUnits: number }> {
  const started = performance.now();
  const child = spawn(ctx.ffmpegPath, fileArgs(ctx.encoderArgs, path), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  ctx.children.add(child);
  let accessUnits = 0;
  const splitter = new AccessUnitSplitter(() => accessUnits++);
  child.stdout.on('data', (chunk: Buffer) => splitter.push(chunk));
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-2000);
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) {
    throw new Error(`ffmpeg exited with ${code}: ${stderr.trim()}`);
  }
  if (splitter.flush()) {
    accessUnits++;
  }
  return { ms: round(performance.now() - started, 1), accessUnits };
}
