import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { isProcessAlive } from './data-dir-lock';

/** First restart delay after the postmaster died; doubled after each failed start. */
const RESTART_FIRST_MS = 500;
/** Longest wait between two restart attempts. */
const RESTART_MAX_MS = 10_000;
/** A start (crash recovery included) that does not report ready within this is killed and retried. */
const START_TIMEOUT_MS = 60_000;
/** A fast shutdown that takes longer than this is cut short with SIGQUIT (immediate shutdown). */
const STOP_TIMEOUT_MS = 10_000;
const READY_LINE = 'database system is ready to accept connections';

/** What the supervisor reports: each outage of the postmaster and how it ended. */
export type PostgresEvent =
  | { type: 'exited'; at: Date; pid: number; code: number | null; signal: string | null }
  | { type: 'restart_failed'; at: Date; attempt: number; error: string; retryInMs: number }
  | { type: 'restarted'; at: Date; pid: number; attempts: number; downMs: number };

export interface PostgresSupervisorOptions {
  /** The `postgres` binary. */
  binary: string;
  clusterDir: string;
  port: number;
  /** Extra server flags (`-c name=value` pairs). */
  flags: string[];
  /** Run as this user when we are root (Postgres refuses to run as root). */
  runAs?: { uid: number; gid: number };
  onLog?: (line: string) => void;
  onEvent?: (event: PostgresEvent) => void;
}

/**
 * Runs the postmaster as our child, in its own process group (`detached`), so a Ctrl-C sent to
 * the service's group does not stop the database under a drain that still needs it: the service
 * stops it itself, last. When the postmaster dies unexpectedly (kill -9, OOM killer), it is
 * restarted with backoff until it runs again or stop() is called.
 *
 * A postmaster must not outlive the service: a watchdog shell, in a process group of its own too,
 * holds a pipe from us and shuts the postmaster down (SIGINT, fast shutdown) when that pipe
 * closes, which happens however the service ends, kill -9 included. Should the watchdog itself be
 * killed, the next start on the DATA_DIR takes the orphan over (stopOrphan). Detected by the
 * child's exit event: no polling is needed while the postmaster is our child.
 */
export class PostgresSupervisor {
  private child: ChildProcess | null = null;
  private watchdog: ChildProcess | null = null;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private downSince: number | null = null;
  private attempts = 0;
  private stopped: Promise<void> | null = null;

  constructor(private readonly options: PostgresSupervisorOptions) {}

  /** True while the postmaster runs and has said it accepts connections. */
  get running(): boolean {
    return this.child !== null && this.downSince === null;
  }

  /** The postmaster's pid, while it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the postmaster; rejects when it exits before it accepts connections. */
  async start(): Promise<void> {
    await stopOrphan(this.options.clusterDir);
    await this.spawnPostmaster();
  }

  /** Fast shutdown (SIGINT), waiting for the postmaster to exit; no restart after this. */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    this.stopWatchdog();
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGQUIT'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  private spawnPostmaster(): Promise<void> {
    const { binary, clusterDir, port, flags, runAs } = this.options;
    const child = spawn(binary, ['-D', clusterDir, '-p', String(port), ...flags], {
      ...runAs,
      // Its own process group: signals to the service's group (Ctrl-C) do not reach it.
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_MESSAGES: 'C' },
    });
    this.child = child;
    // From the start: a service that dies while Postgres is still starting must not leave it.
    this.startWatchdog(child);
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      let tail = '';
      const timer = setTimeout(() => {
        child.kill('SIGQUIT');
      }, START_TIMEOUT_MS);
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        for (const line of chunk.split('\n')) {
          if (line.trim()) {
            this.options.onLog?.(line.trim());
            tail = line.trim();
          }
        }
        if (!ready && chunk.includes(READY_LINE)) {
          ready = true;
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        if (!ready) {
          reject(err);
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (this.child === child) {
          this.child = null;
        }
        this.stopWatchdog();
        if (!ready) {
          reject(
            new Error(
              `postgres exited before accepting connections (code ${code}, signal ${signal})` +
                (tail ? `: ${tail}` : ''),
            ),
          );
          return;
        }
        if (!this.stopping) {
          this.onUnexpectedExit(child.pid ?? 0, code, signal);
        }
      });
    });
  }

  private onUnexpectedExit(pid: number, code: number | null, signal: string | null): void {
    this.downSince = Date.now();
    this.attempts = 0;
    this.options.onEvent?.({ type: 'exited', at: new Date(), pid, code, signal });
    this.scheduleRestart(RESTART_FIRST_MS);
  }

  private scheduleRestart(delayMs: number): void {
    if (this.stopping) {
      return;
    }
    this.restartTimer = setTimeout(() => void this.restart(delayMs), delayMs);
  }

  private async restart(lastDelayMs: number): Promise<void> {
    if (this.stopping) {
      return;
    }
    this.attempts++;
    try {
      // A postmaster killed with -9 leaves its children for a moment; they hold the shared memory
      // that a new postmaster refuses to start beside.
      await killStragglers(this.options.clusterDir);
      if (this.stopping) {
        return;
      }
      await this.spawnPostmaster();
    } catch (err) {
      if (this.stopping) {
        // stop() shut down the postmaster it found starting: not a failed restart.
        return;
      }
      const retryInMs = Math.min(lastDelayMs * 2, RESTART_MAX_MS);
      this.options.onEvent?.({
        type: 'restart_failed',
        at: new Date(),
        attempt: this.attempts,
        error: err instanceof Error ? err.message : String(err),
        retryInMs,
      });
      this.scheduleRestart(retryInMs);
      return;
    }
    if (this.stopping) {
      // stop() came while it was starting, and shuts down the child it found.
      return;
    }
    const downMs = Date.now() - (this.downSince ?? Date.now());
    this.downSince = null;
    this.options.onEvent?.({
      type: 'restarted',
      at: new Date(),
      pid: this.child?.pid ?? 0,
      attempts: this.attempts,
      downMs,
    });
  }

  /**
   * `read` returns when our end of its stdin closes, that is when this process is gone, however
   * it ended; then the postmaster gets SIGINT. Its own process group keeps Ctrl-C away from it.
   */
  private startWatchdog(child: ChildProcess): void {
    this.stopWatchdog();
    if (child.pid === undefined || process.platform === 'win32') {
      return;
    }
    const watchdog = spawn(
      '/bin/sh',
      ['-c', 'read _; kill -INT "$0" 2>/dev/null', String(child.pid)],
      {
        detached: true,
        stdio: ['pipe', 'ignore', 'ignore'],
      },
    );
    watchdog.on('error', () => undefined);
    watchdog.stdin?.on('error', () => undefined);
    // Neither keeps the event loop alive; the pipe only has to exist as long as we do.
    watchdog.unref();
    (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    this.watchdog = watchdog;
  }

  private stopWatchdog(): void {
    const watchdog = this.watchdog;
    this.watchdog = null;
    if (watchdog && watchdog.exitCode === null && watchdog.signalCode === null) {
      watchdog.kill('SIGKILL');
    }
  }
}

/** The uid and gid of the `postgres` system user, to run the server as when we are root. */
export function postgresUserIds(): { uid: number; gid: number } {
  const id = (flag: string): number =>
    Number.parseInt(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim(), 10);
  return { uid: id('-u'), gid: id('-g') };
}

/**
 * A framegate killed with SIGKILL may leave its Postgres running (when its watchdog was killed
 * too); we own the data directory now (DATA_DIR lock), so that postmaster is an orphan of ours
 * and is shut down before starting.
 */
export async function stopOrphan(clusterDir: string): Promise<void> {
  const pidFile = join(clusterDir, 'postmaster.pid');
  if (existsSync(pidFile)) {
    const pid = Number.parseInt(readFileSync(pidFile, 'utf8').split('\n')[0] ?? '', 10);
    if (Number.isInteger(pid) && pid > 0 && isProcessAlive(pid)) {
      process.kill(pid, 'SIGINT');
      await waitUntil(() => !isProcessAlive(pid), 30_000);
      if (isProcessAlive(pid)) {
        throw new Error(`an orphaned Postgres (pid ${pid}) still runs on ${clusterDir}`);
      }
    }
  }
  await killStragglers(clusterDir);
}

/**
 * Server processes whose postmaster is gone (they exit by themselves once they notice, but a new
 * postmaster must not wait for that). Postgres processes run in their data directory, so /proc
 * tells which belong to this cluster. Only called when no postmaster of ours runs there.
 */
export async function killStragglers(clusterDir: string): Promise<void> {
  const pids = postgresProcessesIn(clusterDir);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  await waitUntil(() => pids.every((pid) => !isProcessAlive(pid)), 5_000);
}

/** Processes whose working directory is `clusterDir` (Linux; elsewhere none are found). */
export function postgresProcessesIn(clusterDir: string): number[] {
  let target: string;
  let entries: string[];
  try {
    target = realpathSync(clusterDir);
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const entry of entries) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) {
      continue;
    }
    try {
      // Backends rewrite their command line ("postgres: user db ..."); the executable's name stays.
      if (
        readlinkSync(`/proc/${pid}/cwd`) === target &&
        readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres'
      ) {
        found.push(pid);
      }
    } catch {
      // Gone, or not ours to read.
    }
  }
  return found;
}

async function waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
}
