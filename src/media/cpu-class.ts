import { execFile } from 'node:child_process';
import { setPriority } from 'node:os';
import { findOnPath } from './ffmpeg-locator';

/**
 * The CPU classes of an encoder:
 * - `normal`: the service's priority;
 * - `live`: normal scheduling at nice 15, for the encoder of a session that streams in real time:
 *   one encoder among dozens, it yields to the service's event loop and Postgres (acks, the spool,
 *   the lease) and to an encoder whose `close` is waiting (`normal`), where the same priority for
 *   all let 28 live encoders delay both. Nice 15 because the weights add up: 26 encoders at nice 5
 *   (weight 335 each against the event loop's 1 024) still outweighed it 8 to 1 and left acks
 *   half a second late at capacity; at nice 15 (36 each) about 1 to 1. The encoders still take
 *   every cycle the service leaves (bench:capacity, docs/recording.md);
 * - `background`: Linux's SCHED_IDLE policy (through util-linux `chrt`) and nice 19: the process
 *   runs only when nothing else wants the CPU, which nice levels alone do not give (36 encoders at
 *   nice 19 still took 80 % of a core from a saturated event loop in bench:ingest);
 * - `low`: normal scheduling at nice 19, the smallest share that is never starved: for an encoder
 *   whose session is finishing, so that `close` completes even while other work (not necessarily
 *   ours) keeps every core busy, still far behind everything at the service's priority.
 */
export type CpuClass = 'normal' | 'live' | 'background' | 'low';

/**
 * Moves a process from class `from` (a new process: `normal`) to `cpuClass`. Where `chrt` is
 * missing only the nice level applies; it runs only when the policy changes (to or from
 * `background`), since each run forks a process. Raising a priority again (to `normal`, or from
 * SCHED_IDLE to `low`) needs privileges an unprivileged service may not have (CAP_SYS_NICE, or
 * RLIMIT_NICE allowing it): then the process stays where it was. Best effort; never throws.
 */
export function setCpuClass(pid: number, cpuClass: CpuClass, from: CpuClass = 'normal'): void {
  try {
    setPriority(pid, NICENESS[cpuClass]);
  } catch {
    // See above: raising a priority back may be refused.
  }
  const chrt = chrtPath();
  if (chrt && (cpuClass === 'background') !== (from === 'background')) {
    // Asynchronous: a short-lived chrt, off the event loop; its outcome changes nothing here.
    const policy = cpuClass === 'background' ? '--idle' : '--other';
    execFile(chrt, [policy, '--pid', '0', String(pid)], () => undefined);
  }
}

const NICENESS: Record<CpuClass, number> = { normal: 0, live: 15, background: 19, low: 19 };

let chrt: string | null | undefined;

function chrtPath(): string | null {
  if (chrt === undefined) {
    chrt = process.platform === 'linux' ? findOnPath('chrt') : null;
  }
  return chrt;
}
