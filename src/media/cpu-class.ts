import { type ChildProcessByStdio, execFile, spawn } from 'node:child_process';
import { setPriority } from 'node:os';
import type { Writable } from 'node:stream';
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
 * `background`). Raising a priority again (to `normal`, or from SCHED_IDLE to `low`) needs
 * privileges an unprivileged service may not have (CAP_SYS_NICE, or RLIMIT_NICE allowing it):
 * then the process stays where it was. Best effort; never throws.
 */
export function setCpuClass(pid: number, cpuClass: CpuClass, from: CpuClass = 'normal'): void {
  try {
    setPriority(pid, NICENESS[cpuClass]);
  } catch {
    // See above: raising a priority back may be refused.
  }
  if ((cpuClass === 'background') !== (from === 'background')) {
    POLICIES.set(pid, cpuClass === 'background' ? '--idle' : '--other');
  }
}

const NICENESS: Record<CpuClass, number> = { normal: 0, live: 15, background: 19, low: 19 };

/**
 * Sets scheduling policies with `chrt` run by one long-lived shell, not forked by the service:
 * forking a process of a few hundred MB (its page tables) held the event loop about 20 ms per
 * change: 770 ms of a 49 s CPU profile at 26 sessions (recorders falling behind and catching
 * up, tail encoders at `close`); a line to the shell holds it 0.2 ms (bench:cpu-class). The shell
 * also runs the changes in the order they were asked for, which concurrent `chrt` processes did
 * not promise. It exits when its input closes, with the service, however the service ends.
 */
class PolicySetter {
  /** Past this much unread input the shell is stuck: changes fork their own `chrt` instead. */
  private static readonly BACKLOG_BYTES = 64 * 1024;
  private chrt: string | null | undefined;
  private shell: ChildProcessByStdio<Writable, null, null> | null = null;

  set(pid: number, policy: '--idle' | '--other'): void {
    this.chrt ??= process.platform === 'linux' ? findOnPath('chrt') : null;
    if (!this.chrt || !Number.isSafeInteger(pid) || pid <= 0) {
      return;
    }
    const shell = this.shell ?? this.start();
    if (shell && shell.stdin.writableLength < PolicySetter.BACKLOG_BYTES) {
      shell.stdin.write(`${this.chrt} ${policy} --pid 0 ${pid}\n`);
    } else {
      execFile(this.chrt, [policy, '--pid', '0', String(pid)], () => undefined);
    }
  }

  private start(): ChildProcessByStdio<Writable, null, null> | null {
    const sh = findOnPath('sh');
    if (!sh) {
      return null;
    }
    const shell = spawn(sh, [], { stdio: ['pipe', 'ignore', 'ignore'] });
    const gone = (): void => {
      if (this.shell === shell) {
        this.shell = null;
      }
    };
    shell.on('error', gone);
    shell.on('exit', gone);
    // EPIPE once it has exited: the next change starts another.
    shell.stdin.on('error', () => undefined);
    // Neither the shell nor its pipe keeps the service's event loop alive.
    shell.unref();
    (shell.stdin as Writable & { unref?(): void }).unref?.();
    this.shell = shell;
    return shell;
  }
}

const POLICIES = new PolicySetter();
