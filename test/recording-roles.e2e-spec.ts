import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import { scanSpool } from '../src/spool/spool';
import { Canary, expectAcksTimely, expectRecordingComplete } from './support/canary';
import { testDir } from './support/dirs';
import { ServiceProcess, stopServices } from './support/service-process';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';
import { waitFor } from './support/wait';

// A test that failed before stopping its services must not leave them running.
afterEach(() => stopServices());

/**
 * NODE_ROLE gateway + workers on one Postgres, sharing SPOOL_DIR and RECORDINGS_DIR as a cluster
 * shares volumes; each node has its own port and DATA_DIR.
 */
describe('gateway and recording workers', () => {
  let dir: string;
  let databaseUrl: string;
  let db: Pool;

  beforeAll(async () => {
    dir = testDir('roles');
    databaseUrl = await createTestDatabase();
    db = new Pool({ connectionString: databaseUrl, max: 2 });
  });
  afterAll(async () => {
    await db.end();
    await dropTestDatabase(databaseUrl);
    rmSync(dir, { recursive: true, force: true });
  });

  const spoolDir = () => join(dir, 'shared-spool');
  const node = (id: string, role: 'gateway' | 'worker', extra: Record<string, string> = {}) =>
    new ServiceProcess(
      {
        NODE_ID: id,
        NODE_ROLE: role,
        DATA_DIR: join(dir, id),
        SPOOL_DIR: spoolDir(),
        RECORDINGS_DIR: join(dir, 'shared-recordings'),
        DATABASE_URL: databaseUrl,
        AUTH_JWT_SECRET: TEST_SECRET,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        RECORDING_LEASE_MS: '3000',
        // The spool stays after the recording is ready, so its records can be counted.
        KEEP_SPOOL: 'true',
        RECORDING_DECODE_CHECK: 'false',
        ...extra,
      },
      dir,
    );

  const leaseOwner = async (sessionId: string): Promise<string | null> =>
    (
      await db.query<{ lease_owner: string | null }>(
        `SELECT lease_owner FROM recording_work WHERE session_id = $1 AND lease_expires_at > now()`,
        [sessionId],
      )
    ).rows[0]?.lease_owner ?? null;

  const spoolRecords = async (sessionId: string): Promise<number> =>
    (await scanSpool(join(spoolDir(), `${sessionId}.spool`))).records;

  it('a worker killed with -9 mid-session hands the recording to another, which completes it from the spool; a canary keeps timely acks', async () => {
    const gateway = node('gw-a', 'gateway');
    const workers = { 'wk-1': node('wk-1', 'worker'), 'wk-2': node('wk-2', 'worker') };
    const [url] = await Promise.all([
      gateway.listening(),
      workers['wk-1'].listening(),
      workers['wk-2'].listening(),
    ]);

    const session = await Canary.start(url, {
      token: hsToken({ sub: 'teller', channel: 'counter' }),
      width: 640,
      height: 480,
    });
    const canary = await Canary.start(url);
    await waitFor(() => session.sent >= 20, 30_000, 'session streaming');
    let holder: string | null = null;
    await waitFor(
      async () => (holder = await leaseOwner(session.sessionId)) !== null,
      30_000,
      'a worker leases the recording',
    );
    canary.mark();
    await waitFor(() => canary.sent >= 50, 30_000, 'canary alone');
    const alone = canary.mark();

    const victim = holder as unknown as keyof typeof workers;
    const survivor = victim === 'wk-1' ? 'wk-2' : 'wk-1';
    expect((await workers[victim].stop('SIGKILL')).code).toBe(null);
    const killedAt = session.sent;
    await waitFor(
      async () => (await leaseOwner(session.sessionId)) === survivor,
      30_000,
      'the surviving worker claims the recording',
    );
    // The session goes on while the survivor records it from the start of its spool.
    await waitFor(() => session.sent >= Math.max(killedAt, 60) + 30, 60_000, 'session goes on');
    const beside = canary.mark();
    expectAcksTimely(alone, beside);

    const closed = await session.stop();
    const canaryClosed = await canary.stop();
    expect(closed.recording.status).toBe('ready');
    expect(closed.closedFrames).toBe(session.sent);
    expect(await spoolRecords(session.sessionId)).toBe(closed.closedFrames);
    // Row and ffprobe: every acknowledged frame exactly once.
    await expectRecordingComplete(db, session.sessionId, closed.closedFrames);
    expect(canaryClosed.recording.status).toBe('ready');
    await expectRecordingComplete(db, canary.sessionId, canaryClosed.closedFrames);
    expect(workers[survivor].stdout).toMatch(
      new RegExp(`"sessionId":"${session.sessionId}","attempt":2[^\\n]*"recording claimed"`),
    );
    // The work is gone once the recording is ready.
    const left = await db.query(`SELECT 1 FROM recording_work WHERE session_id = $1`, [
      session.sessionId,
    ]);
    expect(left.rowCount).toBe(0);

    expect((await gateway.stop('SIGTERM')).code).toBe(0);
    expect((await workers[survivor].stop('SIGTERM')).code).toBe(0);
  }, 300_000);

  it('with no worker alive sessions are acknowledged and closed as pending; a worker started later catches up', async () => {
    const gateway = node('gw-b', 'gateway', { RECORDING_CLOSE_WAIT_MS: '500' });
    const url = await gateway.listening();
    const session = await Canary.start(url, { token: hsToken({ sub: 'late', channel: 'late' }) });
    await waitFor(() => session.sent >= 30, 30_000, 'session streaming');
    const closed = await session.stop();
    expect(closed.closedFrames).toBe(session.sent);
    expect(closed.recording.status).toBe('pending');

    const worker = node('wk-late', 'worker');
    await worker.listening();
    await expectRecordingComplete(db, session.sessionId, closed.closedFrames);
    expect(await spoolRecords(session.sessionId)).toBe(closed.closedFrames);

    expect((await gateway.stop('SIGTERM')).code).toBe(0);
    expect((await worker.stop('SIGTERM')).code).toBe(0);
  }, 300_000);

  it('a worker serves no streams: the upgrade and session routes answer 503', async () => {
    const worker = node('wk-only', 'worker');
    const url = await worker.listening();
    const token = hsToken({ sub: 'teller' });
    const open = await fetch(`${url}/v1/sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ video: { width: 320, height: 240, fps: 10 } }),
    });
    expect(open.status).toBe(503);
    expect(((await open.json()) as { error: string }).error).toBe('unavailable');
    await expect(Canary.start(url, { token })).rejects.toThrow('handshake refused: 503');
    expect((await fetch(`${url}/health/ready`)).status).toBe(200);
    expect((await worker.stop('SIGTERM')).code).toBe(0);
  }, 120_000);

  it('measures close → ready over 20 sessions with a live worker', async () => {
    const gateway = node('gw-c', 'gateway');
    const worker = node('wk-c', 'worker');
    const [url] = await Promise.all([gateway.listening(), worker.listening()]);
    const closeMs: number[] = [];
    for (let batch = 0; batch < 4; batch++) {
      const sessions = await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          Canary.start(url, {
            token: hsToken({ sub: `teller-${batch}-${i}`, channel: `close-${batch}` }),
            width: 640,
            height: 480,
          }),
        ),
      );
      await waitFor(() => sessions.every((s) => s.sent >= 30), 60_000, 'sessions streaming');
      for (const session of sessions) {
        const closed = await session.stop();
        expect(closed.recording.status).toBe('ready');
        closeMs.push(closed.closeMs);
        await expectRecordingComplete(db, session.sessionId, closed.closedFrames);
      }
    }
    // Of which the worker's own part, from its `recording ready` log lines: finalizing the row,
    // reading the spool's last records, the encoder's end, the ready row.
    const finishMs = [...worker.stdout.matchAll(/"ms":(\d+)[^\n]*"msg":"recording ready"/g)].map(
      (m) => Number(m[1]),
    );
    const quantiles = (values: number[]) => {
      const sorted = [...values].sort((a, b) => a - b);
      const at = (q: number) => Math.round(sorted[Math.ceil(q * sorted.length) - 1]);
      return `p50 ${at(0.5)} ms, p95 ${at(0.95)} ms, max ${at(1)} ms`;
    };
    // A figure for docs/performance.md, not an assertion: timings depend on the machine's load.
    process.stdout.write(
      `close → ready with a live worker, ${closeMs.length} sessions: ${quantiles(closeMs)}; ` +
        `of which the worker's finish (${finishMs.length}): ${quantiles(finishMs)}\n`,
    );
    expect(closeMs).toHaveLength(20);
    expect((await gateway.stop('SIGTERM')).code).toBe(0);
    expect((await worker.stop('SIGTERM')).code).toBe(0);
  }, 300_000);
});
