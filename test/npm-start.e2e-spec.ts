import { exec } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Pool } from 'pg';
import { call } from './support/app';
import {
  alive,
  childrenOf,
  NpmStart,
  npmPackageDir,
  processesMentioning,
  shellEnv,
} from './support/npm-package';
import { expectCountsAgree } from './support/counts';
import { jpegFrames } from './support/media';
import { StreamClient } from './support/stream-client';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';
import { waitFor } from './support/wait';

const sh = promisify(exec);

/** `npm start` until the service listens: npm, the node process it started, and the URL. */
async function startedByNpm(dir: string): Promise<{ run: NpmStart; node: number; url: string }> {
  const run = new NpmStart(dir);
  await waitFor(
    () => run.npm.exitCode !== null || /"msg":"framegate listening"/.test(run.stdout),
    90_000,
    'framegate listening',
  );
  const listening = run.logs().find((l) => l.msg === 'framegate listening');
  if (!listening) {
    throw new Error(`npm start ended: ${run.stdout}\n${run.stderr}`);
  }
  // The start script execs node: npm's only child is the service itself, no shell between.
  const children = childrenOf(run.pid);
  expect(children).toHaveLength(1);
  return { run, node: children[0], url: String(listening.url) };
}

describe('npm start: the npm → node pair stops together', () => {
  let databaseUrl: string;
  const dirs: string[] = [];
  const runs: NpmStart[] = [];

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
  });
  afterAll(async () => {
    // A failed test must not leave npm or the service behind: their process group ends here.
    for (const run of runs) {
      try {
        process.kill(-run.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await dropTestDatabase(databaseUrl);
    for (const dir of dirs) {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  function packageDir(prefix: string, env: Record<string, string>): string {
    const dir = npmPackageDir(prefix, {
      DATABASE_URL: databaseUrl,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      ...env,
    });
    dirs.push(dir);
    return dir;
  }

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'drains and exits 0 when only the npm process gets %s',
    async (signal) => {
      const dir = packageDir('npm-signal', { AUTH_JWT_SECRET: TEST_SECRET });
      const { run, node } = await startedByNpm(dir);
      runs.push(run);

      // npm alone: it runs in its own process group, and the service gets nothing from us.
      process.kill(run.pid, signal);

      expect(await run.exit()).toBe(0);
      await waitFor(() => !alive(node), 30_000, 'the service process to end');
      const logs = run.logs();
      expect(logs.find((l) => l.msg === 'shutting down')).toMatchObject({ signal });
      expect(logs.filter((l) => /shutdown (timed out|failed)/.test(String(l.msg)))).toEqual([]);
    },
    120_000,
  );

  it('SIGTERM to npm only, mid-stream: after a restart and a resume, closed, the row, the recording, ffprobe and the audit agree with the spool', async () => {
    const dir = packageDir('npm-counts', { AUTH_JWT_SECRET: TEST_SECRET, KEEP_SPOOL: 'true' });
    const frames = await jpegFrames(320, 240);
    const token = hsToken({ sub: 'teller' });
    const send = (c: StreamClient, from: number, to: number): void => {
      for (let seq = from; seq <= to; seq++) {
        c.sendFrame(seq, (seq - 1) * 100, frames[seq % frames.length]);
      }
    };
    const first = await startedByNpm(dir);
    runs.push(first.run);
    const c = await StreamClient.connect(first.url, { token });
    const opened = await c.open({ video: { width: 320, height: 240, fps: 10 } });
    send(c, 1, 40);
    await c.acksUntil(40, 30_000);
    send(c, 41, 60);
    process.kill(first.run.pid, 'SIGTERM');
    expect(await first.run.exit()).toBe(0);
    expect((await c.closed).code).toBe(1012);
    await waitFor(() => !alive(first.node), 30_000, 'the service process to end');

    const second = await startedByNpm(dir);
    runs.push(second.run);
    const db = new Pool({ connectionString: databaseUrl, max: 2 });
    try {
      const r = await StreamClient.connect(second.url, { token });
      r.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: opened.resumeToken });
      const resumed = await r.next('opened');
      expect(resumed.lastSeq).toBeGreaterThanOrEqual(c.maxAck);
      send(r, resumed.lastSeq + 1, 60);
      if (resumed.lastSeq < 60) {
        await r.acksUntil(60, 30_000);
      }
      r.send({ type: 'close' });
      const closed = await r.next('closed', 60_000);
      expect(closed.frames).toBe(60);
      const seen = await expectCountsAgree(db, join(dir, 'data'), opened.sessionId, closed.frames);
      expect(seen.recording.probedFrames).toBe(60);
    } finally {
      await db.end();
      process.kill(second.run.pid, 'SIGTERM');
      expect(await second.run.exit()).toBe(0);
    }
  }, 240_000);

  it('holds a SIGTERM that comes during boot (initdb of the embedded Postgres), then drains and exits 0', async () => {
    // No DATABASE_URL: the boot starts an embedded Postgres on a fresh DATA_DIR, which takes
    // seconds and logs (at debug) while it runs.
    const dir = packageDir('npm-boot-signal', {
      DATABASE_URL: '',
      DATA_DIR: './data',
      AUTH_JWT_SECRET: TEST_SECRET,
      LOG_LEVEL: 'debug',
    });
    const run = new NpmStart(dir);
    runs.push(run);
    await waitFor(
      () => run.npm.exitCode !== null || /"component":"embedded-postgres"/.test(run.stdout),
      90_000,
      'the embedded Postgres to log',
    );
    expect(run.stdout).not.toMatch(/"msg":"framegate listening"/);
    const [node] = childrenOf(run.pid);

    process.kill(run.pid, 'SIGTERM');

    expect(await run.exit()).toBe(0);
    await waitFor(() => !alive(node), 30_000, 'the service process to end');
    const messages = run.logs().map((l) => l.msg);
    expect(messages.indexOf('shutting down')).toBeGreaterThan(
      messages.indexOf('framegate listening'),
    );
    expect(run.logs().find((l) => l.msg === 'shutting down')).toMatchObject({ signal: 'SIGTERM' });
    expect(messages.filter((m) => /shutdown (timed out|failed)/.test(String(m)))).toEqual([]);
    // The embedded Postgres the boot started was stopped with the service.
    expect(processesMentioning(join(dir, 'data'))).toEqual([]);
  }, 180_000);

  it('drains when npm dies without passing a signal on (SIGKILL), leaving no orphan', async () => {
    const dir = packageDir('npm-kill', { AUTH_JWT_SECRET: TEST_SECRET });
    const { run, node } = await startedByNpm(dir);
    runs.push(run);

    process.kill(run.pid, 'SIGKILL');

    await run.exit();
    await waitFor(() => !alive(node), 30_000, 'the orphaned service to end');
    const logs = run.logs();
    expect(logs.find((l) => l.msg === 'shutting down')).toMatchObject({
      signal: 'parent_exited',
    });
    expect(logs.filter((l) => /shutdown (timed out|failed)/.test(String(l.msg)))).toEqual([]);
  }, 120_000);

  describe('with DATA_DIR set in .env and a development secret', () => {
    let run: NpmStart;
    let url: string;
    let dir: string;
    let minted = '';
    let session = { sessionId: '', resumeToken: '' };

    beforeAll(async () => {
      dir = packageDir('npm-token', { DATA_DIR: './elsewhere' });
      ({ run, url } = await startedByNpm(dir));
      runs.push(run);
    }, 120_000);
    afterAll(async () => {
      process.kill(run.pid, 'SIGTERM');
      await run.exit();
    });

    it('prints a token command that mints, as printed, a token the service accepts', async () => {
      const hint = run.logs().find((l) => String(l.msg).includes('Mint a token with: '));
      const command = String(hint?.msg).split('Mint a token with: ')[1];
      expect(command).toMatch(/npm run token -- /);

      const { stdout } = await sh(command, { cwd: dir, env: shellEnv() });
      // npm prints its banner first; the token is the last line.
      const token = stdout.trim().split('\n').pop() as string;
      expect(existsSync(join(dir, 'elsewhere', 'dev-jwt-secret'))).toBe(true);
      const created = await call(url, 'POST', '/v1/sessions', {
        token,
        body: { params: { transactionId: 'TX-npm' }, video: { width: 320, height: 240, fps: 5 } },
      });
      expect(created.status).toBe(201);
      session = created.body as { sessionId: string; resumeToken: string };
      minted = token;
    }, 60_000);

    it('logs a session without video as a warning with its reason, not an error with a stack', async () => {
      // The session of the test above, closed with no frame: its recording fails, as expected.
      const closed = await call(url, 'POST', `/v1/sessions/${session.sessionId}/close`, {
        token: minted,
        headers: { 'x-resume-token': session.resumeToken },
      });
      expect(closed.body.recording).toMatchObject({
        status: 'failed',
        reason: 'no video frames to record',
      });
      await waitFor(() => /"msg":"recording failed"/.test(run.stdout), 10_000, 'the log line');
      const line = run.logs().find((l) => l.msg === 'recording failed');
      expect(line).toMatchObject({ level: 40, reason: 'no video frames to record' });
      expect(line).not.toHaveProperty('err');
    }, 60_000);
  });
});
