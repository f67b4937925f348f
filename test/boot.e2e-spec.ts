import { testDir } from './support/dirs';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ServiceProcess, stopServices, TS_NODE } from './support/service-process';
import { call } from './support/app';

// A test that failed before stopping its service must not leave it (and its Postgres) running.
afterEach(() => stopServices());

const ROOT = join(__dirname, '..');
const run = promisify(execFile);

describe('configuration at boot', () => {
  let cwd: string;
  beforeAll(() => {
    cwd = testDir('boot');
  });
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  it('stops on an invalid PORT, naming the variable, without a stack trace', async () => {
    const exit = await new ServiceProcess(
      { PORT: 'eighty', DATA_DIR: join(cwd, 'd1') },
      cwd,
    ).exit();
    expect(exit.code).not.toBe(0);
    expect(exit.stderr).toMatch(/PORT: .*"eighty"/);
    expect(exit.stderr).not.toMatch(/\n\s+at /);
  });

  it('stops on a malformed DATABASE_URL and lists every bad variable at once', async () => {
    const exit = await new ServiceProcess(
      { DATABASE_URL: 'mysql//nope', LOG_LEVEL: 'chatty', DATA_DIR: join(cwd, 'd2') },
      cwd,
    ).exit();
    expect(exit.code).not.toBe(0);
    expect(exit.stderr).toMatch(/DATABASE_URL: must be a postgres:\/\//);
    expect(exit.stderr).toMatch(/LOG_LEVEL:/);
    expect(exit.stderr).not.toMatch(/\n\s+at /);
  });

  it('refuses production without auth configuration', async () => {
    const exit = await new ServiceProcess(
      { NODE_ENV: 'production', DATA_DIR: join(cwd, 'd3') },
      cwd,
    ).exit();
    expect(exit.code).not.toBe(0);
    expect(exit.stderr).toMatch(/AUTH_JWKS_URL: production needs AUTH_JWKS_URL or AUTH_JWT_SECRET/);
  });
});

describe('embedded Postgres under DATA_DIR', () => {
  let cwd: string;
  let dataDir: string;
  const env = (): Record<string, string> => ({
    DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
  });

  beforeAll(() => {
    cwd = testDir('embedded');
    dataDir = join(cwd, 'data');
  });
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  it('keeps the data of the first start, and refuses a second process on the same DATA_DIR', async () => {
    const first = new ServiceProcess(env(), cwd);
    const url = await first.listening();
    expect(first.stdout).toMatch(/npm run token -- --sub alice/);

    // The development secret is shared with the token CLI through DATA_DIR.
    const { stdout: token } = await run(
      process.execPath,
      [
        '-r',
        TS_NODE,
        join(ROOT, 'src/auth/token.cli.ts'),
        '--sub',
        'alice',
        '--channel',
        'branch-app',
        '--scope',
        'stream:publish',
      ],
      {
        cwd,
        env: {
          PATH: process.env.PATH,
          DATA_DIR: dataDir,
          TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'),
        },
      },
    );
    const created = await call(url, 'POST', '/v1/sessions', {
      token: token.trim(),
      body: {
        params: { transactionId: 'TX-embedded' },
        video: { width: 640, height: 480, fps: 10 },
      },
    });
    expect(created.status).toBe(201);

    const intruder = await new ServiceProcess(env(), cwd).exit();
    expect(intruder.code).not.toBe(0);
    expect(intruder.stderr).toMatch(
      /DATA_DIR .* is in use by another framegate process \(pid \d+\)/,
    );

    expect((await first.stop('SIGTERM')).code).toBe(0);
    // The graceful stop wrote the last audit records to Postgres before stopping it: no journal.
    const journal = join(dataDir, 'audit-journal');
    const leftover = existsSync(journal)
      ? readdirSync(journal).filter((f) => readFileSync(join(journal, f), 'utf8').trim() !== '')
      : [];
    expect(leftover).toEqual([]);

    const second = new ServiceProcess(env(), cwd);
    const url2 = await second.listening();
    const read = await call(url2, 'GET', `/v1/sessions/${String(created.body.sessionId)}`, {
      token: token.trim(),
    });
    expect(read.status).toBe(200);
    expect(read.body.params).toEqual({ transactionId: 'TX-embedded' });
    expect((await second.stop('SIGTERM')).code).toBe(0);
  }, 300_000);
});
