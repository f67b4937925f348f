import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Absolute, so a child runs TypeScript from any working directory. */
export const TS_NODE = require.resolve('ts-node/register/transpile-only');

/** Kernel clock ticks per second for /proc/<pid>/stat times; 100 on every Linux we run on. */
const CLK_TCK = 100;
/** Exit code of the bash wrapper when it cannot raise the open-files limit far enough. */
const NOFILE_EXIT = 97;
/** How much of a child's output is kept for error messages. */
const OUTPUT_KEEP_CHARS = 64 * 1024;
const MAX_KEPT_PROBLEMS = 5;

export interface ChildOptions {
  /** For progress lines and errors. */
  name: string;
  /** The TypeScript entry point, run through ts-node (transpile only). */
  script: string;
  args?: string[];
  env: Record<string, string | undefined>;
  cwd: string;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** The child must be allowed at least this many open files; its soft limit is raised for it. */
  minOpenFiles: number;
  /** Resolves `start()` with the first match on stdout. */
  ready: RegExp;
  readyTimeoutMs?: number;
}

/**
 * A benchmark server in its own process, so that its CPU never competes with the load generator
 * inside one event loop. Started through bash to raise the soft open-files limit first (`exec`
 * keeps the pid, so /proc/<pid> is the node process).
 */
export class BenchChild {
  /** Log lines at warn or above (pino levels 40+), counted, and the first few kept. */
  readonly logProblems = { warn: 0, error: 0, first: [] as string[] };
  private output = '';
  private partial = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    const keep = (d: Buffer): void => {
      this.output = (this.output + d.toString()).slice(-OUTPUT_KEEP_CHARS);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    child.stdout?.on('data', (d: Buffer) => this.scanLog(d.toString()));
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
  }

  static async start(o: ChildOptions): Promise<{ child: BenchChild; match: RegExpExecArray }> {
    // Try a generous limit, else the hard limit; refuse to run below what the scenario needs.
    const script =
      'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; ' +
      `if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt ${o.minOpenFiles} ]; then ` +
      `echo "open-files limit $(ulimit -n) (hard $(ulimit -Hn)) is below the ${o.minOpenFiles} needed" >&2; ` +
      `exit ${NOFILE_EXIT}; fi; exec "$@"`;
    const proc = spawn(
      'bash',
      [
        '-c',
        script,
        'bash',
        process.execPath,
        ...(o.nodeArgs ?? []),
        '-r',
        TS_NODE,
        o.script,
        ...(o.args ?? []),
      ],
      { cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const child = new BenchChild(o.name, proc);
    const match = await new Promise<RegExpExecArray>((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(() => {
        reject(new Error(`${o.name} did not start within ${o.readyTimeoutMs ?? 60_000} ms`));
      }, o.readyTimeoutMs ?? 60_000);
      proc.stdout?.on('data', (d: Buffer) => {
        seen += d.toString();
        const m = o.ready.exec(seen);
        if (m) {
          clearTimeout(timer);
          resolve(m);
        }
      });
      void child.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        const why =
          code === NOFILE_EXIT
            ? 'cannot raise the open-files limit (see below; raise `ulimit -Hn` or lower BENCH_IDLE_CONNECTIONS)'
            : `exited with ${code ?? signal}`;
        reject(new Error(`${o.name} ${why}:\n${child.output.trim()}`));
      });
    }).catch(async (err: unknown) => {
      await child.stop(2_000);
      throw err;
    });
    return { child, match };
  }

  private scanLog(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) {
      const level = /^\{"level":(\d+)/.exec(line);
      if (!level || Number(level[1]) < 40) {
        continue;
      }
      if (Number(level[1]) >= 50) {
        this.logProblems.error++;
      } else {
        this.logProblems.warn++;
      }
      if (this.logProblems.first.length < MAX_KEPT_PROBLEMS) {
        this.logProblems.first.push(line.slice(0, 500));
      }
    }
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines of the child's stdout and stderr. */
  get recentOutput(): string {
    return this.output;
  }

  /** Resident set size of the server process itself, in bytes. */
  rssBytes(): number {
    return rssOf(this.pid);
  }

  /**
   * Resident set size of the process and its descendants (framegate's ffmpeg encoders), in bytes;
   * pages shared between them are counted once per process.
   */
  treeRssBytes(): number {
    return processTree(this.pid).reduce((sum, pid) => sum + rssOf(pid), 0);
  }

  /**
   * CPU time of the process and its descendants, live or already reaped, in milliseconds: user and
   * system time (/proc/<pid>/stat fields 14-17 of every process in the tree), and `own`, the
   * process's own threads alone (event loop, libuv pool, GC).
   */
  cpuMs(): { user: number; sys: number; own: number } {
    let user = 0;
    let sys = 0;
    let own = 0;
    for (const pid of processTree(this.pid)) {
      const fields = statFields(pid);
      if (fields) {
        user += Number(fields[11]) + Number(fields[13]);
        sys += Number(fields[12]) + Number(fields[14]);
        if (pid === this.pid) {
          own = Number(fields[11]) + Number(fields[12]);
        }
      }
    }
    return {
      user: (user * 1000) / CLK_TCK,
      sys: (sys * 1000) / CLK_TCK,
      own: (own * 1000) / CLK_TCK,
    };
  }

  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves with how it ended and how long it took. */
  async stop(
    timeoutMs: number,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number; killed: boolean }> {
    const started = Date.now();
    let killed = false;
    if (this.running) {
      this.child.kill('SIGTERM');
    }
    const timer = setTimeout(() => {
      killed = true;
      this.child.kill('SIGKILL');
    }, timeoutMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return { ...exit, ms: Date.now() - started, killed };
  }
}

/** The fields of /proc/<pid>/stat after the command name (index 0 is field 3); null when gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; the fields after it are plain numbers.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** VmRSS of a process in bytes; 0 when it is gone. */
export function rssOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** `root` and every live descendant of it. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) {
      continue;
    }
    const fields = statFields(Number(name));
    if (fields) {
      const ppid = Number(fields[1]);
      const list = children.get(ppid);
      if (list) {
        list.push(Number(name));
      } else {
        children.set(ppid, [Number(name)]);
      }
    }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) {
    tree.push(...(children.get(tree[i]) ?? []));
  }
  return tree;
}

/** CPU time of the whole machine from /proc/stat: busy and total, in clock ticks. */
export function machineCpuTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  // idle and iowait
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * Pressure stall totals (/proc/pressure/<cpu|io>, µs since boot): how long some task, or every
 * task, was stalled waiting for the resource. null where the kernel has no PSI.
 */
export function pressureTotals(): { cpuSome: number; ioSome: number; ioFull: number } | null {
  try {
    const total = (text: string, kind: 'some' | 'full'): number =>
      Number(new RegExp(`^${kind} .*total=(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    const cpu = readFileSync('/proc/pressure/cpu', 'utf8');
    const io = readFileSync('/proc/pressure/io', 'utf8');
    return { cpuSome: total(cpu, 'some'), ioSome: total(io, 'some'), ioFull: total(io, 'full') };
  } catch {
    return null;
  }
}

/** The soft and hard open-files limits of this process (/proc/self/limits). */
export function openFilesLimit(): { soft: number; hard: number } {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const num = (v: string | undefined): number =>
    v === undefined || v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v);
  return { soft: num(m?.[1]), hard: num(m?.[2]) };
}
