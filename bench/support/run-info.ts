/**
 * What every benchmark shares: its progress lines, its cleanup, and what it reports about the run
 * (the source measured, the machine, the disk).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { cpus, release } from 'node:os';

const ROOT = resolve(__dirname, '../..');

/** A progress line on stderr, stamped with the benchmark's name and the time. */
export function progressFor(bench: string): (line: string) => void {
  return (line) => {
    process.stderr.write(`[bench:${bench} ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
  };
}

/** The commit measured and how many service source files differ from it; null outside git. */
export function sourceState(): { commit: string; uncommittedFiles: number } | null {
  try {
    const git = (...args: string[]): string =>
      execFileSync('git', args, {
        cwd: ROOT,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    const commit = git('rev-parse', '--short', 'HEAD').trim();
    const changed = git('--no-optional-locks', 'status', '--porcelain', '--', 'src', 'migrations');
    return { commit, uncommittedFiles: changed.split('\n').filter(Boolean).length };
  } catch {
    return null;
  }
}

/** `type device` of the mount holding `path`, from /proc/mounts: fdatasync costs depend on it. */
export function filesystemOf(path: string): string {
  let best = { mount: '', text: 'unknown' };
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [device, mount, type] = line.split(' ');
    if (mount && (path === mount || path.startsWith(mount.endsWith('/') ? mount : `${mount}/`))) {
      if (mount.length >= best.mount.length) {
        best = { mount, text: `${type} on ${device} (${mount})` };
      }
    }
  }
  return best.text;
}

/** The machine a benchmark ran on, for its JSON. */
export function machineInfo(): {
  nproc: number;
  cpuModel: string;
  memoryGB: number;
  kernel: string;
  node: string;
} {
  return {
    nproc: cpus().length,
    cpuModel: cpuModel(),
    memoryGB: memoryGB(),
    kernel: release(),
    node: process.version,
  };
}

export function cpuModel(): string {
  const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  return m?.[1]?.trim() ?? 'unknown';
}

export function memoryGB(): number {
  const kb = Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  return Math.round((kb / 1024 ** 2) * 10) / 10;
}

/** An error's message, or the value as text. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A child that ignores SIGTERM is killed after 30 s; no cleanup step may take longer than this. */
const CLEANUP_STEP_TIMEOUT_MS = 45_000;

/** Everything started, stopped in reverse order: on success, on failure and on a signal. */
export class Cleanup {
  private readonly steps: Array<{ name: string; fn: () => unknown }> = [];

  constructor(private readonly progress: (line: string) => void) {}

  add(name: string, fn: () => unknown): void {
    this.steps.push({ name, fn });
  }

  /** Ctrl-C or SIGTERM: run every step (servers, temp dirs), then exit 130. */
  stopOnSignals(): void {
    const onSignal = (signal: NodeJS.Signals): void => {
      this.progress(`${signal}: stopping`);
      void this.run().finally(() => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }

  async run(): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(step.fn),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error('timed out')), CLEANUP_STEP_TIMEOUT_MS);
          }),
        ]);
      } catch (err) {
        this.progress(`cleanup: ${step.name} failed: ${describe(err)}`);
      } finally {
        clearTimeout(timer);
      }
    }
  }
}
