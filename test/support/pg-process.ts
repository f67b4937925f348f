import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');

/** A Postgres server in a child process that a test can stop and start again on the same port. */
export class PgProcess {
  private child: ChildProcess | undefined;
  url = '';

  constructor(
    private readonly dir: string,
    private port: number,
  ) {}

  async start(): Promise<string> {
    const child = spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        join(ROOT, 'test/support/pg-server.ts'),
        this.dir,
        String(this.port),
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    this.url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /READY (\S+)/.exec(out);
        if (m?.[1]) {
          resolve(m[1]);
        }
      });
      child.once('exit', (code) => reject(new Error(`pg-server exited with ${code}: ${err}`)));
    });
    this.port = Number(new URL(this.url).port);
    return this.url;
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) {
      return;
    }
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }
}
