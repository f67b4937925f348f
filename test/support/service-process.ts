import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
/** Absolute, so a script can run from any working directory. */
export const TS_NODE = require.resolve('ts-node/register/transpile-only');
/**
 * The service as `npm start` runs it, from its build (`ensureServiceBuilt`): through ts-node every
 * start transpiled all of src again, 5 of its 7 CPU-seconds before listening, and the test suite
 * starts the service about a hundred times.
 */
export const MAIN = join(ROOT, 'dist', 'src', 'main.js');

let built = false;

/**
 * Brings `dist` up to date with src, once per process (the tests' global setup, a benchmark):
 * `tsc -b` is incremental, so after no change to src it costs a second or two.
 */
export function ensureServiceBuilt(): void {
  if (built) {
    return;
  }
  execFileSync(
    process.execPath,
    [
      join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-b',
      join(ROOT, 'tsconfig.build.json'),
    ],
    { stdio: 'inherit' },
  );
  built = true;
}

export interface ServiceExit {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Services started and not yet exited, for `stopServices` after each test. */
const running = new Set<ServiceProcess>();

/**
 * Stops every service a test left running (an assertion failed before its own stop): SIGTERM
 * first, so an embedded Postgres is stopped with it, then SIGKILL if it does not exit. Call it
 * from `afterEach` in every spec that starts a ServiceProcess, so no child outlives its test.
 */
export async function stopServices(graceMs = 60_000): Promise<void> {
  await Promise.all(
    [...running].map(async (service) => {
      const timer = setTimeout(() => service.child.kill('SIGKILL'), graceMs);
      try {
        await service.stop('SIGTERM');
      } finally {
        clearTimeout(timer);
      }
    }),
  );
}

/**
 * The service as an operator runs it: the built `dist/src/main.js` in its own process, in a
 * working directory of the test's choosing.
 */
export class ServiceProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  private readonly exited: Promise<ServiceExit>;

  /**
   * `detached`: the service leads its own process group, as a shell's foreground job does, so a
   * test can send a signal to the whole group (`process.kill(-pid, …)`) as Ctrl-C does.
   */
  constructor(
    env: Record<string, string | undefined>,
    cwd: string,
    options: { detached?: boolean } = {},
  ) {
    ensureServiceBuilt();
    this.child = spawn(process.execPath, [MAIN], {
      cwd,
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: options.detached ?? false,
    });
    this.child.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    running.add(this);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        running.delete(this);
        resolve({ code, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  /** Resolves with the URL from the `framegate listening` log line, or rejects if it exits first. */
  listening(timeoutMs = 90_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`service did not start: ${this.stderr}`)),
        timeoutMs,
      );
      const check = (): void => {
        const m = /"url":"([^"]+)"[^\n]*"msg":"framegate listening"/.exec(this.stdout);
        if (m?.[1]) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      this.child.stdout?.on('data', check);
      check();
      void this.exited.then((exit) => {
        clearTimeout(timer);
        reject(new Error(`service exited with ${exit.code}: ${exit.stderr}`));
      });
    });
  }

  exit(): Promise<ServiceExit> {
    return this.exited;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<ServiceExit> {
    if (this.child.exitCode === null) {
      this.child.kill(signal);
    }
    return this.exited;
  }
}
