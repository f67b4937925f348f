import { execFile } from 'node:child_process';
import { setPriority } from 'node:os';
import { findOnPath } from './ffmpeg-locator';

/**
 * Moves a process between the normal CPU class and the background one. Background is Linux's
 * SCHED_IDLE policy (through util-linux `chrt`): the process runs only when nothing else wants the
 * CPU, which nice levels alone do not give (36 encoders at nice 19 still took 80 % of a core from
 * a saturated event loop in bench:ingest). It is also set to nice 19, which is all that applies
 * where `chrt` is missing. Going back to normal needs privileges an unprivileged service may not
 * have (CAP_SYS_NICE, or RLIMIT_NICE allowing it): then the process stays in the background.
 * Both directions are best effort and never throw.
 */
export function setBackground(pid: number, background: boolean): void {
  try {
    setPriority(pid, background ? BACKGROUND_NICENESS : 0);
  } catch {
    // See above: raising a priority back may be refused.
  }
  const chrt = chrtPath();
  if (chrt) {
    // Asynchronous: a short-lived chrt, off the event loop; its outcome changes nothing here.
    execFile(chrt, [background ? '--idle' : '--other', '--pid', '0', String(pid)], () => undefined);
  }
}

const BACKGROUND_NICENESS = 19;

let chrt: string | null | undefined;

function chrtPath(): string | null {
  if (chrt === undefined) {
    chrt = process.platform === 'linux' ? findOnPath('chrt') : null;
  }
  return chrt;
}
