import { readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { Pool } from 'pg';
import { postgresProcessesIn } from '../src/database/postgres-supervisor';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { call } from './support/app';
import { testDir } from './support/dirs';
import { expectCountsAgree } from './support/counts';
import { jpegFrames, probe } from './support/media';
import { ServiceProcess } from './support/service-process';
import { rejectedHandshake, StreamClient } from './support/stream-client';
import { hsToken, TEST_SECRET } from './support/tokens';
import { waitFor } from './support/wait';

/**
 * The service on its embedded Postgres (no DATABASE_URL), with the database killed under it. The
 * tests share one DATA_DIR, so the cluster is initialised once; each starts its own service.
 */
describe('embedded Postgres outages', () => {
  let dir: string;
  let dataDir: string;
  let clusterDir: string;
  let frames: Buffer[];
  const token = hsToken({ sub: 'teller' });
  const video = { video: { width: 320, height: 240, fps: 10 } };

  beforeAll(async () => {
    dir = testDir('pg-outage');
    dataDir = join(dir, 'data');
    clusterDir = join(dataDir, 'postgres');
    frames = await jpegFrames(320, 240);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Services a test started; one still running after it (a failed test) is killed. */
  const services: ServiceProcess[] = [];
  const startService = (
    extra: Record<string, string> = {},
    options: { detached?: boolean } = {},
  ): ServiceProcess => {
    const service = new ServiceProcess(env(extra), dir, options);
    services.push(service);
    return service;
  };
  afterEach(async () => {
    for (const service of services.splice(0)) {
      await service.stop('SIGKILL');
    }
  });

  const env = (extra: Record<string, string> = {}) => ({
    DATA_DIR: dataDir,
    AUTH_JWT_SECRET: TEST_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    NODE_ID: 'outage-node',
    STREAM_MAX_FPS: '2000',
    ...extra,
  });

  const send = (c: StreamClient, from: number, to: number): void => {
    for (let seq = from; seq <= to; seq++) {
      c.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
  };

  /** Line 1 of postmaster.pid is the postmaster's pid, line 4 its port. */
  const postmaster = (): { pid: number; port: number } => {
    const lines = readFileSync(join(clusterDir, 'postmaster.pid'), 'utf8').split('\n');
    return { pid: Number(lines[0]), port: Number(lines[3]) };
  };

  /**
   * kill -9 of the postmaster, then its port taken by a listener that drops every connection:
   * the database stays unreachable, and each restart fails (port in use), until release().
   */
  async function killPostgres(): Promise<{ release(): Promise<void> }> {
    const { pid, port } = postmaster();
    process.kill(pid, 'SIGKILL');
    const blocker = createServer((socket) => socket.destroy());
    await waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          const fail = (): void => resolve(false);
          blocker.once('error', fail);
          blocker.listen(port, '127.0.0.1', () => {
            blocker.off('error', fail);
            resolve(true);
          });
        }),
      5_000,
      `port ${port} of the killed postmaster free`,
    );
    return { release: () => closeServer(blocker) };
  }

  /** A pool on the embedded database, with the password the service keeps beside the cluster. */
  function databasePool(): Pool {
    const password = readFileSync(join(dataDir, 'postgres.password'), 'utf8').trim();
    const pool = new Pool({
      host: '127.0.0.1',
      port: postmaster().port,
      user: 'postgres',
      password,
      database: 'framegate',
      max: 2,
    });
    pool.on('error', () => undefined);
    return pool;
  }

  it('keeps acking open streams while Postgres is dead, answers 503/1013 meanwhile, restarts it, and every count agrees', async () => {
    const service = startService({ RESUME_WINDOW_MS: '10000' });
    const url = await service.listening(120_000);
    let blocked: { release(): Promise<void> } | undefined;
    try {
      const a = await StreamClient.connect(url, { token });
      const b = await StreamClient.connect(url, { token });
      const sa = await a.open(video);
      const sb = await b.open(video);
      send(a, 1, 20);
      send(b, 1, 20);
      await a.acksUntil(20);
      await b.acksUntil(20);
      // Dropped while the database is dead: its interruption cannot be written then.
      const dropped = await StreamClient.connect(url, { token });
      const sd = await dropped.open(video);
      send(dropped, 1, 10);
      await dropped.acksUntil(10);

      const { body: minted } = await call<{ ticket: string }>(url, 'POST', '/v1/tickets', {
        token,
      });
      blocked = await killPostgres();
      dropped.ws.terminate();

      // Streams already open keep acking: the ack path does not touch the database.
      send(a, 21, 40);
      send(b, 21, 40);
      await a.acksUntil(40, 30_000);
      await b.acksUntil(40, 30_000);

      // Anything that needs the database says 503 with Retry-After, or 1013 on a WebSocket.
      const ticket = await call(url, 'POST', '/v1/tickets', { token });
      expect(ticket.status).toBe(503);
      expect(ticket.body).toEqual({ error: 'database_unavailable', message: expect.any(String) });
      expect(Number(ticket.headers.get('retry-after'))).toBeGreaterThan(0);
      const httpOpen = await call(url, 'POST', '/v1/sessions', { token, body: video });
      expect(httpOpen.status).toBe(503);
      expect(httpOpen.headers.get('retry-after')).not.toBeNull();
      const redeemed = await rejectedHandshake(url, { ticket: minted.ticket });
      expect(redeemed.status).toBe(503);
      expect(redeemed.body.error).toBe('database_unavailable');
      expect(redeemed.headers['retry-after']).toBeDefined();
      // Connection quotas are counted in Postgres: a new WebSocket is refused before its 101.
      const refused = await rejectedHandshake(url, { token });
      expect(refused.status).toBe(503);
      expect(refused.body.error).toBe('database_unavailable');
      expect(refused.headers['retry-after']).toBe('5');
      await waitFor(
        async () => (await call(url, 'GET', '/health/ready')).status === 503,
        30_000,
        'readiness reporting the database down',
      );
      // The details name the failing check, for an admin.
      const ready = await call(url, 'GET', '/health/ready', {
        token: hsToken({ sub: 'ops', scope: 'admin' }),
      });
      expect(ready.body.details.database.status).toBe('down');
      // The supervisor keeps trying, with backoff, while it cannot start.
      await waitFor(
        () => /embedded Postgres did not restart; retrying/.test(service.stdout),
        30_000,
        'a failed restart logged',
      );
      send(a, 41, 60);
      send(b, 41, 60);
      await a.acksUntil(60, 30_000);
      await b.acksUntil(60, 30_000);

      // Postgres comes back by itself once it can.
      await blocked.release();
      blocked = undefined;
      await waitFor(
        async () => (await call(url, 'GET', '/health/ready')).status === 200,
        60_000,
        'readiness back',
      );
      expect(service.stdout).toMatch(/embedded Postgres restarted/);
      const fresh = await StreamClient.connect(url, { token });
      await fresh.open(video);
      send(fresh, 1, 5);
      await fresh.acksUntil(5);
      fresh.send({ type: 'close' });
      expect((await fresh.next('closed', 30_000)).frames).toBe(5);

      send(a, 61, 80);
      send(b, 61, 80);
      await a.acksUntil(80, 30_000);
      await b.acksUntil(80, 30_000);
      for (const c of [a, b]) {
        c.send({ type: 'close' });
        const closed = await c.next('closed', 60_000);
        expect(closed.frames).toBe(80);
        expect(closed.recording.status).toBe('ready');
        expect(c.maxAck).toBe(80);
        expect((await c.closed).code).toBe(1000);
      }

      const db = databasePool();
      try {
        const rows = await db.query<{ last_seq: string; video_frames: string; status: string }>(
          `SELECT last_seq, video_frames, status FROM sessions WHERE id = ANY($1::uuid[])`,
          [[sa.sessionId, sb.sessionId]],
        );
        expect(rows.rows).toEqual([
          { last_seq: '80', video_frames: '80', status: 'closed' },
          { last_seq: '80', video_frames: '80', status: 'closed' },
        ]);
        const recordings = await db.query<{ path: string; frame_count: number }>(
          `SELECT path, frame_count FROM recordings WHERE session_id = ANY($1::uuid[])`,
          [[sa.sessionId, sb.sessionId]],
        );
        expect(recordings.rows.map((r) => r.frame_count)).toEqual([80, 80]);
        for (const r of recordings.rows) {
          expect((await probe(r.path)).videoFrames).toBe(80);
        }
        // The session dropped during the outage is not left open: once the database is back it
        // is interrupted, abandoned when its window passes, and recorded with its 10 frames.
        await waitFor(
          async () => {
            const r = await db.query<{ status: string; rec: string | null }>(
              `SELECT s.status, r.status AS rec FROM sessions s
                 LEFT JOIN recordings r ON r.session_id = s.id WHERE s.id = $1`,
              [sd.sessionId],
            );
            return r.rows[0]?.status === 'abandoned' && r.rows[0]?.rec === 'ready';
          },
          90_000,
          'the session dropped during the outage abandoned and recorded',
        );
        const droppedRow = await db.query<{
          video_frames: string;
          frame_count: number;
          path: string;
        }>(
          `SELECT s.video_frames, r.frame_count, r.path FROM sessions s
             JOIN recordings r ON r.session_id = s.id WHERE s.id = $1`,
          [sd.sessionId],
        );
        expect(droppedRow.rows[0]).toMatchObject({ video_frames: '10', frame_count: 10 });
        expect((await probe(droppedRow.rows[0].path)).videoFrames).toBe(10);
        // The outage is on record once the audit journal has been replayed.
        await waitFor(
          async () => {
            const events = await db.query<{ type: string }>(
              `SELECT type FROM node_events WHERE node = 'outage-node' ORDER BY at`,
            );
            return events.rows.map((r) => r.type).join() === 'database_down,database_up';
          },
          30_000,
          'database_down and database_up audited',
        );
      } finally {
        await db.end();
      }
    } finally {
      await blocked?.release();
      expect((await service.stop('SIGTERM')).code).toBe(0);
    }
    expect(postgresProcessesIn(clusterDir)).toEqual([]);
  }, 300_000);

  it('completes a SIGTERM with the database dead: exit 0 before SHUTDOWN_TIMEOUT_MS, drain not held up', async () => {
    // The shutdown timer exits 1; exit 0 means the drain finished within it.
    const service = startService({ SHUTDOWN_TIMEOUT_MS: '20000' });
    const url = await service.listening(120_000);
    const c = await StreamClient.connect(url, { token });
    await c.open(video);
    send(c, 1, 10);
    await c.acksUntil(10);
    const blocked = await killPostgres();
    try {
      send(c, 11, 20);
      await c.acksUntil(20, 30_000);
      const exit = await service.stop('SIGTERM');
      expect({ code: exit.code, stderr: exit.stderr }).toEqual({ code: 0, stderr: '' });
      expect((await c.closed).code).toBe(1012);
      expect(exit.stdout).toMatch(/"msg":"drained"/);
    } finally {
      await blocked.release();
    }
    expect(postgresProcessesIn(clusterDir)).toEqual([]);
  }, 300_000);

  it('ends cleanly on SIGINT to its process group (Ctrl-C): Postgres stopped last, counters saved, nothing left running; after a restart and a resume every count agrees with the spool', async () => {
    const service = startService({ KEEP_SPOOL: 'true' }, { detached: true });
    const url = await service.listening(120_000);
    const c = await StreamClient.connect(url, { token });
    const opened = await c.open(video);
    send(c, 1, 30);
    await c.acksUntil(30);
    // Mid-stream: more frames are on their way when Ctrl-C arrives.
    send(c, 31, 45);
    process.kill(-(service.child.pid as number), 'SIGINT');
    const exit = await service.exit();
    expect({ code: exit.code, stderr: exit.stderr }).toEqual({ code: 0, stderr: '' });
    expect((await c.closed).code).toBe(1012);
    // Postgres went last: after the drain and the application's own shutdown.
    const drained = exit.stdout.indexOf('"msg":"drained"');
    expect(drained).toBeGreaterThan(-1);
    expect(exit.stdout.indexOf('"msg":"embedded Postgres stopped"')).toBeGreaterThan(drained);
    expect(postgresProcessesIn(clusterDir)).toEqual([]);
    const acked = c.maxAck;
    expect(acked).toBeGreaterThanOrEqual(30);

    // The drain wrote the session's counters before the database was stopped: at least what was
    // acked (a frame that arrived after the final ack is stored, and resent by a client anyway).
    const again = startService({ KEEP_SPOOL: 'true' });
    const url2 = await again.listening(120_000);
    const db = databasePool();
    try {
      const row = await db.query<{ last_seq: string; frames: string; status: string }>(
        `SELECT last_seq, (video_frames + rejected_frames)::text AS frames, status
         FROM sessions WHERE id = $1`,
        [opened.sessionId],
      );
      const stored = Number(row.rows[0].last_seq);
      expect(stored).toBeGreaterThanOrEqual(acked);
      expect(row.rows).toEqual([
        { last_seq: String(stored), frames: String(stored), status: 'interrupted' },
      ]);

      // Resumed with nothing new, then closed: closed, the row, the recording, ffprobe and the
      // audit trail all say what the spool holds.
      const r = await StreamClient.connect(url2, { token });
      r.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: opened.resumeToken });
      expect((await r.next('opened')).lastSeq).toBe(stored);
      r.send({ type: 'close' });
      const closed = await r.next('closed', 60_000);
      expect(closed.frames).toBe(stored);
      const seen = await expectCountsAgree(db, dataDir, opened.sessionId, closed.frames);
      expect(seen.recording.probedFrames).toBe(stored);
    } finally {
      await db.end();
      expect((await again.stop('SIGTERM')).code).toBe(0);
    }
    expect(postgresProcessesIn(clusterDir)).toEqual([]);
  }, 300_000);

  it('does not let its Postgres outlive it: after a kill -9 of the service the watchdog stops it', async () => {
    const service = startService();
    await service.listening(120_000);
    const { pid } = postmaster();
    expect(postgresProcessesIn(clusterDir)).toContain(pid);
    expect((await service.stop('SIGKILL')).code).toBe(null);
    await waitFor(
      () => postgresProcessesIn(clusterDir).length === 0,
      60_000,
      'no Postgres process left on the DATA_DIR',
    );
    // The next start finds the stale lock and a stopped cluster, and starts normally.
    const next = startService();
    await next.listening(120_000);
    const exit = await next.stop('SIGTERM');
    expect({ code: exit.code, stderr: exit.stderr }).toEqual({ code: 0, stderr: '' });
    expect(postgresProcessesIn(clusterDir)).toEqual([]);
  }, 300_000);
});

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
