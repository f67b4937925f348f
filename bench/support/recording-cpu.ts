import { readdirSync, readFileSync } from 'node:fs';

/** Kernel clock ticks per second for /proc times; 100 on every Linux we run on. */
const CLK_TCK = 100;

/** CPU time of the whole machine from /proc/stat: busy and total, in clock ticks. */
export function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * CPU time (ms) used so far by `rootPid` and every process below it: each live process's own
 * time plus what its reaped children left in its cutime/cstime, so a child that exits between
 * two readings is still counted. Postgres, the service and its ffmpeg children are all below us.
 */
export function treeCpuMs(rootPid: number): number {
  const parentOf = new Map<number, number>();
  const timeOf = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) {
      continue;
    }
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // The command name (field 2) may contain spaces; the fields after it are plain numbers.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pid = Number(name);
    parentOf.set(pid, Number(fields[1]));
    timeOf.set(
      pid,
      Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]),
    );
  }
  const children = new Map<number, number[]>();
  for (const [pid, parent] of parentOf) {
    const list = children.get(parent) ?? [];
    list.push(pid);
    children.set(parent, list);
  }
  let ticks = 0;
  const stack = [rootPid];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    ticks += timeOf.get(pid) ?? 0;
    stack.push(...(children.get(pid) ?? []));
  }
  return (ticks * 1000) / CLK_TCK;
}

export interface CpuFigures {
  wallMs: number;
  /** Percentages of one core (200 = both cores of a 2-core machine busy). */
  machineBusyPct: number;
  /** This process tree: the load generator, the service, its ffmpeg children, Postgres. */
  oursPct: number;
  /** This process alone (the load generator). */
  loadGeneratorPct: number;
  /**
   * Everything below this process (the service and its encoders, Postgres, and the ffmpeg
   * baselines this benchmark runs itself), and its CPU time in ms.
   */
  childrenPct: number;
  childrenCpuMs: number;
  /** Everyone else on the machine. */
  otherPct: number;
  /**
   * The children's share split: the service's Node process, its children (the ffmpeg encoders),
   * and the rest (Postgres and its launcher, plus any ffmpeg this benchmark runs itself).
   */
  split: { serviceNodePct: number; encodersPct: number; restPct: number } | null;
}

/** CPU time (ms) of one process itself, all its threads, without its children. */
export function ownCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** CPU use over a window: the whole machine, this process tree, and everyone else. */
export class CpuWindow {
  private readonly machine0 = machineTicks();
  private readonly tree0 = treeCpuMs(process.pid);
  private readonly self0 = process.cpuUsage();
  private readonly started = Date.now();
  private readonly serviceTree0: number;
  private readonly serviceOwn0: number;

  /** With `servicePid`, the service's share is split into its Node process and its children. */
  constructor(private readonly servicePid?: number) {
    this.serviceTree0 = servicePid ? treeCpuMs(servicePid) : 0;
    this.serviceOwn0 = servicePid ? ownCpuMs(servicePid) : 0;
  }

  end(): CpuFigures {
    const m = machineTicks();
    const wallMs = Math.max(1, Date.now() - this.started);
    const pct = (ms: number): number => Math.round((ms / wallMs) * 100);
    const machineMs = ((m.busy - this.machine0.busy) * 1000) / CLK_TCK;
    const treeMs = treeCpuMs(process.pid) - this.tree0;
    const self = process.cpuUsage(this.self0);
    const selfMs = (self.user + self.system) / 1000;
    let split: CpuFigures['split'] = null;
    if (this.servicePid) {
      const tree = treeCpuMs(this.servicePid) - this.serviceTree0;
      const own = ownCpuMs(this.servicePid) - this.serviceOwn0;
      split = {
        serviceNodePct: pct(own),
        encodersPct: pct(tree - own),
        restPct: pct(treeMs - selfMs - tree),
      };
    }
    return {
      wallMs,
      machineBusyPct: pct(machineMs),
      oursPct: pct(treeMs),
      loadGeneratorPct: pct(selfMs),
      childrenPct: pct(treeMs - selfMs),
      childrenCpuMs: Math.round(treeMs - selfMs),
      otherPct: Math.max(0, pct(machineMs - treeMs)),
      split,
    };
  }
}

/**
 * Waits (at most `maxSeconds`) until the machine is quiet — under `busyPct` % of all cores busy
 * for one second — since figures taken while someone else's work runs on the same cores mean
 * little. Resolves with the last busy figure seen.
 */
export async function waitForQuiet(
  maxSeconds: number,
  busyPct: number,
  say: (line: string) => void,
): Promise<number> {
  const deadline = Date.now() + maxSeconds * 1000;
  let said = false;
  for (;;) {
    const a = machineTicks();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const b = machineTicks();
    const busy = ((b.busy - a.busy) / (b.total - a.total || 1)) * 100;
    if (busy < busyPct || Date.now() >= deadline) {
      if (busy >= busyPct) {
        say(`  machine still ${Math.round(busy)}% busy after ${maxSeconds} s; going on`);
      }
      return Math.round(busy);
    }
    if (!said) {
      say(`  machine ${Math.round(busy)}% busy with other work; waiting up to ${maxSeconds} s`);
      said = true;
    }
  }
}
