import { readdir, readlink } from 'node:fs/promises';
import { sep } from 'node:path';

/**
 * Kills the processes working inside `dir` (their working directory is in it): the ffmpeg of an
 * attempt whose service was killed outlives it (ffmpeg ignores SIGPIPE), and would go on taking
 * CPU from the attempt that replaces it. Linux's /proc shows each process's working directory;
 * where there is no /proc, none are found. Returns the pids killed.
 */
export async function killProcessesIn(dir: string): Promise<number[]> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return [];
  }
  const killed: number[] = [];
  for (const name of entries) {
    if (!/^\d+$/.test(name)) {
      continue;
    }
    let cwd: string;
    try {
      cwd = await readlink(`/proc/${name}/cwd`);
    } catch {
      // Gone meanwhile, or another user's process: not ours to inspect.
      continue;
    }
    if (cwd === dir || cwd.startsWith(dir + sep)) {
      try {
        process.kill(Number(name), 'SIGKILL');
        killed.push(Number(name));
      } catch {
        // It ended on its own meanwhile.
      }
    }
  }
  return killed;
}
