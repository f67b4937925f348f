import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool } from 'pg';
import { DataSource } from 'typeorm';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { call, startTestApp, type TestApp } from './support/app';
import { testDir } from './support/dirs';
import { jpegFrames } from './support/media';
import { PgProcess } from './support/pg-process';
import { rejectedHandshake, StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

/** The service on an external DATABASE_URL whose server goes away and comes back. */
describe('external database going away and coming back', () => {
  let dir: string;
  let pg: PgProcess;
  let app: TestApp;
  let frames: Buffer[];
  const token = hsToken({ sub: 'teller' });
  const video = { video: { width: 320, height: 240, fps: 10 } };

  beforeAll(async () => {
    dir = testDir('reconnect');
    pg = new PgProcess(join(dir, 'postgres'), 0);
    const url = new URL(await pg.start());
    url.pathname = '/framegate';
    app = await startTestApp({ databaseUrl: url.toString(), env: { STREAM_MAX_FPS: '2000' } });
    frames = await jpegFrames(320, 240);
  });
  afterAll(async () => {
    await app.close();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const send = (c: StreamClient, from: number, to: number): void => {
    for (let seq = from; seq <= to; seq++) {
      c.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
  };
  const readiness = async (): Promise<number> =>
    (await call(app.url, 'GET', '/health/ready')).status;

  /**
   * Down: readiness false, 503 with Retry-After over HTTP, and a new WebSocket refused before its
   * 101 (its channel's connections are counted in Postgres).
   */
  async function expectUnavailable(): Promise<void> {
    await waitFor(async () => (await readiness()) === 503, 30_000, 'readiness false');
    const ticket = await call(app.url, 'POST', '/v1/tickets', { token });
    expect(ticket.status).toBe(503);
    expect(ticket.body.error).toBe('database_unavailable');
    expect(ticket.headers.get('retry-after')).not.toBeNull();
    const refused = await rejectedHandshake(app.url, { token });
    expect(refused.status).toBe(503);
    expect(refused.body.error).toBe('database_unavailable');
  }

  /** Back: readiness true, and a new session opens, streams and closes with every frame. */
  async function expectWorking(): Promise<void> {
    await waitFor(async () => (await readiness()) === 200, 60_000, 'readiness true');
    const c = await StreamClient.connect(app.url, { token });
    await c.open(video);
    send(c, 1, 5);
    await c.acksUntil(5);
    c.send({ type: 'close' });
    expect((await c.next('closed', 30_000)).frames).toBe(5);
  }

  it('keeps an error listener on every pooled connection it hands out', async () => {
    // The pool drops its own listener on checkout and TypeORM adds its one a microtask later: a
    // FATAL parsed in between must still find a listener (src/database/pool-errors.ts).
    const pool = (app.started.app.get(DataSource).driver as unknown as { master: Pool }).master;
    const client = await pool.connect();
    try {
      expect(client.listenerCount('error')).toBeGreaterThanOrEqual(1);
    } finally {
      client.release();
    }
  });

  it('reconnects its pool after a clean server restart and after a kill -9 of the postmaster', async () => {
    const live = await StreamClient.connect(app.url, { token });
    const opened = await live.open(video);
    send(live, 1, 10);
    await live.acksUntil(10);

    // A clean stop: pooled connections are terminated (57P01), new ones refused.
    await pg.stop();
    await expectUnavailable();
    send(live, 11, 20);
    await live.acksUntil(20, 30_000);
    await pg.start();
    await expectWorking();

    // A crash: connections reset, no goodbye; the test server's supervisor restarts it.
    const pidFile = join(dir, 'postgres', 'postmaster.pid');
    // The new postmaster replaces the file; it may be missing for a moment meanwhile.
    const postmaster = (): number => {
      try {
        return Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
      } catch {
        return NaN;
      }
    };
    const killed = postmaster();
    process.kill(killed, 'SIGKILL');
    send(live, 21, 30);
    await live.acksUntil(30, 30_000);
    await waitFor(() => ![killed, NaN].includes(postmaster()), 60_000, 'a new postmaster');
    await expectWorking();

    live.send({ type: 'close' });
    expect((await live.next('closed', 60_000)).frames).toBe(30);
    const row = await app.db.query<{ last_seq: string; video_frames: string }>(
      `SELECT last_seq, video_frames FROM sessions WHERE id = $1`,
      [opened.sessionId],
    );
    expect(row.rows).toEqual([{ last_seq: '30', video_frames: '30' }]);
  }, 300_000);
});
