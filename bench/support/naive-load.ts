/**
 * The naive recorder under real-time load: one ffmpeg per session, fed one JPEG every 100 ms on
 * stdin, as a team writing the obvious recorder would run it, and judged by the same "keeps up"
 * rule as framegate's recorders (recording-load.ts).
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable, Writable } from 'node:stream';
import type { ChildSet } from './recording-ffmpeg';
import { type Percentiles, percentiles, round, sleep, slope } from './recording-load';

const FRAME_INTERVAL_MS = 100;
const POLL_MS = 1_000;
/** The "keeps up" rule of recording-load.ts: the last 5 s, 2 frames a session, 0.05 frames/s. */
const KEEP_UP_TAIL_S = 5;
const KEEP_UP_FRAMES_PER_SESSION = 2;
const KEEP_UP_GROWTH_PER_SESSION = 0.05;
/** A recorder whose input ended may take this long to finish before it counts as hung. */
const EXIT_TIMEOUT_MS = 120_000;

export interface NaiveTrialOptions {
  ffmpegPath: string;
  /** The command for session `i`'s output file, without the ffmpeg binary. */
  args: (outPath: string) => string[];
  outDir: string;
  sessions: number;
  seconds: number;
  /** The JPEG session `i` sends as its frame `seq` (from 1). */
  jpeg: (session: number, seq: number) => Buffer;
  /** Mean JPEG size: stdin bytes not yet taken by ffmpeg are counted in frames of this size. */
  meanJpegBytes: number;
  children: ChildSet;
  /** Called when the first session starts sending and when the last recorder has exited. */
  onStreaming?: (edge: 'start' | 'end') => void;
}

export interface NaiveTrialResult {
  sessions: number;
  seconds: number;
  keptUp: boolean;
  why: string[];
  sentFrames: number;
  sentFps: number;
  /** Session `i`'s output file. */
  outputs: string[];
  backlog: {
    /** Frames written and not yet read by ffmpeg (in Node's buffer), all sessions, last 5 s. */
    maxTail: number;
    allowedTail: number;
    slopeSecondHalf: number;
    allowedSlope: number;
    maxPerSession: number;
    series: number[];
  };
  /** stdin closed → ffmpeg exited with the MP4 written: the naive recorder's close → ready. */
  closeMs: Percentiles;
  exitCodes: Record<string, number>;
}

/**
 * `sessions` ffmpeg processes, each fed at a real 10 fps (staggered across the interval, as
 * independent cameras are) for `seconds`; then each one's stdin is closed and its exit awaited.
 * What ffmpeg has not read stays in its stdin's buffer in this process: that is its backlog (the
 * pipe itself holds about 64 KB more, as framegate's encoders hold 256 KB, so the growth check
 * is what sees a small overload).
 */
export async function naiveTrial(o: NaiveTrialOptions): Promise<NaiveTrialResult> {
  type Child = ChildProcessByStdio<Writable, Readable, Readable>;
  const children: Child[] = [];
  const exits: Array<Promise<number | null>> = [];
  const outputs: string[] = [];
  const timers: NodeJS.Timeout[] = [];
  const stderr: string[] = [];
  try {
    for (let i = 0; i < o.sessions; i++) {
      const out = join(o.outDir, `naive-${o.sessions}-${i}.mp4`);
      outputs.push(out);
      const child = spawn(o.ffmpegPath, o.args(out), { stdio: ['pipe', 'pipe', 'pipe'] });
      o.children.add(child);
      children.push(child);
      stderr.push('');
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (text: string) => {
        stderr[i] = (stderr[i] + text).slice(-1000);
      });
      // EPIPE if it dies: its exit code says so.
      child.stdin.on('error', () => undefined);
      exits.push(
        new Promise((resolve) => {
          child.once('error', () => resolve(null));
          child.once('close', (code) => resolve(code));
        }),
      );
    }
    const seqs = new Array<number>(o.sessions).fill(0);
    let stopped = false;
    o.onStreaming?.('start');
    const t0 = performance.now();
    children.forEach((child, i) => {
      const start = t0 + (i * FRAME_INTERVAL_MS) / o.sessions;
      const send = (): void => {
        if (stopped || child.exitCode !== null) {
          return;
        }
        const seq = ++seqs[i];
        child.stdin.write(o.jpeg(i, seq));
        timers[i] = setTimeout(send, start + seq * FRAME_INTERVAL_MS - performance.now());
      };
      timers[i] = setTimeout(send, start - performance.now());
    });
    const samples: Array<{ t: number; total: number; max: number }> = [];
    const endAt = t0 + o.seconds * 1000;
    for (let k = 1; t0 + k * POLL_MS <= endAt; k++) {
      await sleep(t0 + k * POLL_MS - performance.now());
      const frames = children.map((c) => c.stdin.writableLength / o.meanJpegBytes);
      samples.push({
        t: (performance.now() - t0) / 1000,
        total: round(
          frames.reduce((a, b) => a + b, 0),
          1,
        ),
        max: round(Math.max(0, ...frames), 1),
      });
    }
    await sleep(endAt - performance.now());
    const sendSeconds = (performance.now() - t0) / 1000;
    stopped = true;
    for (const timer of timers) {
      clearTimeout(timer);
    }
    const sentFrames = seqs.reduce((a, b) => a + b, 0);

    const closeMs: number[] = [];
    const codes = await Promise.all(
      children.map(async (child, i) => {
        const closedAt = performance.now();
        child.stdin.end();
        const code = await Promise.race([exits[i], sleep(EXIT_TIMEOUT_MS).then(() => 'hung')]);
        if (code === 0) {
          closeMs.push(performance.now() - closedAt);
        }
        return String(code);
      }),
    );
    // After the exits: what x264 still had in its lookahead is part of the frames' cost.
    o.onStreaming?.('end');
    const exitCodes: Record<string, number> = {};
    for (const code of codes) {
      exitCodes[code] = (exitCodes[code] ?? 0) + 1;
    }

    const half = samples.filter((s) => s.t >= o.seconds / 2);
    const tail = samples.filter((s) => s.t >= o.seconds - KEEP_UP_TAIL_S);
    const allowedTail = KEEP_UP_FRAMES_PER_SESSION * o.sessions;
    const allowedSlope = round(Math.max(1, KEEP_UP_GROWTH_PER_SESSION * o.sessions), 2);
    const maxTail = Math.max(0, ...tail.map((s) => s.total));
    const slopeSecondHalf = round(slope(half.map((s) => [s.t, s.total])), 2);
    const why: string[] = [];
    if (tail.length === 0) {
      why.push('no backlog sample in the last seconds');
    }
    if (maxTail > allowedTail) {
      why.push(`${maxTail} > ${allowedTail} frames not yet read in the last ${KEEP_UP_TAIL_S} s`);
    }
    if (slopeSecondHalf > allowedSlope) {
      why.push(
        `backlog grows by ${slopeSecondHalf} frames/s in the second half (allowed ${allowedSlope})`,
      );
    }
    if ((exitCodes['0'] ?? 0) !== o.sessions) {
      const failed = stderr.find((text, i) => text && codes[i] !== '0') ?? '';
      why.push(`exit codes ${JSON.stringify(exitCodes)}${failed ? `: ${failed.trim()}` : ''}`);
    }
    return {
      sessions: o.sessions,
      seconds: o.seconds,
      keptUp: why.length === 0,
      why,
      sentFrames,
      sentFps: round(sentFrames / sendSeconds, 1),
      outputs,
      backlog: {
        maxTail: round(maxTail, 1),
        allowedTail,
        slopeSecondHalf,
        allowedSlope,
        maxPerSession: Math.max(0, ...samples.map((s) => s.max)),
        series: samples.map((s) => s.total),
      },
      closeMs: percentiles(closeMs),
      exitCodes,
    };
  } finally {
    for (const timer of timers) {
      clearTimeout(timer);
    }
    for (const child of children) {
      if (child.exitCode === null) {
        child.kill('SIGKILL');
      }
    }
  }
}
