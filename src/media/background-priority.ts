import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * Encoding can catch up from the spool; storing and acknowledging frames cannot wait. So encoders
 * run under Linux's SCHED_IDLE policy (through util-linux `chrt`, which then execs ffmpeg in the
 * same process): they get a CPU only when the event loop, Postgres and everything else at normal
 * priority leave it idle. Plain nice levels are not enough for this: 36 encoders at nice 10 or
 * even 19 still outweigh the one event loop thread by CFS weight when all of them are runnable.
 * Where `chrt` is missing, callers fall back to a nice level.
 */
let chrtPath: string | null | undefined;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findChrt(): string | null {
  if (process.platform !== 'linux') {
    return null;
  }
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  return dirs.map((dir) => join(dir, 'chrt')).find(executable) ?? null;
}

/** The command line that runs `command` in the background class; `idle` when SCHED_IDLE applies. */
export function backgroundCommand(
  command: string,
  args: string[],
): { command: string; args: string[]; idle: boolean } {
  chrtPath ??= findChrt();
  // A command that cannot run is spawned directly, so the spawn error names it (ENOENT, EACCES)
  // rather than coming back as chrt's exit status.
  return chrtPath && executable(command)
    ? { command: chrtPath, args: ['--idle', '0', command, ...args], idle: true }
    : { command, args, idle: false };
}
