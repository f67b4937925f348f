import { readdirSync, readFileSync } from 'node:fs';

/** A process as /proc shows it. */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  nice: number;
  /** Scheduling policy (0 SCHED_OTHER, 5 SCHED_IDLE). */
  policy: number;
  cmdline: string;
}

function processInfo(pid: number): ProcessInfo | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; from the state (field 3) on, plain fields:
    // ppid is the 4th, nice the 19th, policy the 41st.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {
      pid,
      ppid: Number(fields[1]),
      nice: Number(fields[16]),
      policy: Number(fields[38]),
      cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8'),
    };
  } catch {
    // Gone between the listing and the read.
    return null;
  }
}

/**
 * The live descendants of `root` (by default this process, where tests run the app) whose
 * command line contains `marker`. Descendants, not children: the service starts its encoders
 * through the process launcher (src/media/process-launcher.ts), so they are grandchildren.
 */
export function descendantsMatching(marker: string, root: number = process.pid): ProcessInfo[] {
  const all = readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map((entry) => processInfo(Number(entry)))
    .filter((p): p is ProcessInfo => p !== null);
  const below = new Set([root]);
  // Parents before children is not promised by the listing: repeat until nothing is added.
  for (let added = true; added;) {
    added = false;
    for (const p of all) {
      if (!below.has(p.pid) && below.has(p.ppid)) {
        below.add(p.pid);
        added = true;
      }
    }
  }
  return all.filter((p) => p.pid !== root && below.has(p.pid) && p.cmdline.includes(marker));
}
