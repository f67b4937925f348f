/**
 * bench:cpu-class: what a change of an encoder's scheduling policy costs the service's event
 * loop. Encoders move to and from SCHED_IDLE (`background`, src/media/cpu-class.ts) as their
 * recorders fall behind and catch up, and as tail encoders start and finish at `close`; Node can
 * set a nice level itself but a policy only through util-linux `chrt`.
 *
 * In one run, alternating, the same changes on the same processes:
 * - baseline `fork`: one `chrt` forked by the service per change (execFile), as before;
 * - `shell`: `setCpuClass`, whose changes go as lines to one long-lived shell that runs `chrt`.
 * For each: the time each call holds the event loop (p50, p99, max, sum), the event loop's delay
 * meanwhile (p99, max), how long after the last change every process has its last requested
 * policy, and how many processes ended on another policy than the last one requested (changes
 * applied out of order).
 *
 * The process holds a heap like the service's at load (forking copies its page tables).
 * Progress goes to stderr, one JSON object to stdout.
 *
 * Env (all optional):
 * - BENCH_HEAP_MB (300): memory held, in 1 MB buffers, plus small objects like the service's;
 * - BENCH_PROCESSES (26): processes whose class changes (`sleep`, like 26 live encoders);
 * - BENCH_CHANGES (200): changes per round, one every BENCH_CHANGE_EVERY_MS (20);
 * - BENCH_ROUNDS (2): rounds of each method, alternating.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setCpuClass } from '../src/media/cpu-class';
import { findOnPath } from '../src/media/ffmpeg-locator';
import { holdServiceLikeHeap } from './support/heap';
import { progressFor, sourceState } from './support/run-info';

const progress = progressFor('cpu-class');

const HEAP_MB = Number(process.env.BENCH_HEAP_MB ?? 300);
const PROCESSES = Number(process.env.BENCH_PROCESSES ?? 26);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 200);
const CHANGE_EVERY_MS = Number(process.env.BENCH_CHANGE_EVERY_MS ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

const SCHED_OTHER = 0;
const SCHED_IDLE = 5;

type Method = 'fork' | 'shell';

interface Round {
  callMs: number[];
  delayP99Ms: number;
  delayMaxMs: number;
  settledMs: number;
  wrongAtEnd: number;
}

function policyOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // /proc/[pid]/stat field 41 is the policy; fields after the parenthesised name start at 3.
  return Number(
    stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .at(41 - 3),
  );
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

async function runRound(method: Method, chrt: string, pids: number[]): Promise<Round> {
  // Every process starts in normal scheduling, nice 0 (as root: a nice level can go back).
  for (const pid of pids) {
    setPriority(pid, 0);
    execFile(chrt, ['--other', '--pid', '0', String(pid)], () => undefined);
  }
  await sleep(500);
  const want = new Map<number, number>(pids.map((pid) => [pid, SCHED_OTHER]));
  const callMs: number[] = [];
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  for (let i = 0; i < CHANGES; i++) {
    const pid = pids[i % pids.length];
    const toIdle = want.get(pid) !== SCHED_IDLE;
    const started = performance.now();
    if (method === 'shell') {
      setCpuClass(pid, toIdle ? 'background' : 'low', toIdle ? 'normal' : 'background');
    } else {
      setPriority(pid, 19);
      execFile(chrt, [toIdle ? '--idle' : '--other', '--pid', '0', String(pid)], () => undefined);
    }
    callMs.push(performance.now() - started);
    want.set(pid, toIdle ? SCHED_IDLE : SCHED_OTHER);
    await sleep(CHANGE_EVERY_MS);
  }
  delay.disable();
  const lastAt = performance.now();
  // Settled: every process on its last requested policy, or 5 s gone (some never will: wrong).
  let wrong = pids.filter((pid) => policyOf(pid) !== want.get(pid));
  while (wrong.length > 0 && performance.now() - lastAt < 5_000) {
    await sleep(5);
    wrong = pids.filter((pid) => policyOf(pid) !== want.get(pid));
  }
  return {
    callMs,
    delayP99Ms: delay.percentile(99) / 1e6,
    delayMaxMs: delay.max / 1e6,
    settledMs: wrong.length === 0 ? performance.now() - lastAt : NaN,
    wrongAtEnd: wrong.length,
  };
}

function summary(rounds: Round[]): Record<string, number> {
  const calls = rounds.flatMap((r) => r.callMs).sort((a, b) => a - b);
  return {
    changes: calls.length,
    callP50Ms: round2(quantile(calls, 0.5)),
    callP99Ms: round2(quantile(calls, 0.99)),
    callMaxMs: round2(calls.at(-1) ?? NaN),
    loopHeldPerChangeMs: round2(calls.reduce((a, b) => a + b, 0) / calls.length),
    loopDelayP99Ms: round2(Math.max(...rounds.map((r) => r.delayP99Ms))),
    loopDelayMaxMs: round2(Math.max(...rounds.map((r) => r.delayMaxMs))),
    settledAfterLastMs: round2(Math.max(...rounds.map((r) => r.settledMs))),
    processesOnAnotherPolicy: rounds.reduce((a, r) => a + r.wrongAtEnd, 0),
  };
}

async function main(): Promise<void> {
  const chrt = findOnPath('chrt');
  if (process.platform !== 'linux' || !chrt) {
    throw new Error('bench:cpu-class needs Linux and util-linux chrt');
  }
  progress(`holding ${HEAP_MB} MB; ${PROCESSES} processes; ${CHANGES} changes per round`);
  const held = holdServiceLikeHeap(HEAP_MB);
  const children: ChildProcess[] = Array.from({ length: PROCESSES }, () =>
    spawn('sleep', ['600'], { stdio: 'ignore' }),
  );
  const pids = children.map((c) => c.pid as number);
  const rounds: Record<Method, Round[]> = { fork: [], shell: [] };
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const method of ['fork', 'shell'] as const) {
        progress(`round ${r + 1}/${ROUNDS}: ${method}`);
        rounds[method].push(await runRound(method, chrt, pids));
      }
    }
  } finally {
    for (const child of children) {
      child.kill('SIGKILL');
    }
  }
  const fork = summary(rounds.fork);
  const shell = summary(rounds.shell);
  process.stdout.write(
    `${JSON.stringify(
      {
        bench: 'cpu-class',
        source: sourceState(),
        heldMb: HEAP_MB,
        rssMb: Math.round(process.memoryUsage().rss / 1e6),
        processes: PROCESSES,
        baseline: { method: 'a chrt forked by the service per change', ...fork },
        framegate: { method: 'setCpuClass: a line to one long-lived shell', ...shell },
        loopHeldRatio: round2(fork.loopHeldPerChangeMs / shell.loopHeldPerChangeMs),
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
