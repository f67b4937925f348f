import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import type { Opened } from '../src/protocol/open-session.schema';
import { testDir } from './support/dirs';
import { jpegFrames, probe } from './support/media';
import { ServiceProcess, stopServices } from './support/service-process';
import { StreamClient } from './support/stream-client';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';

jest.setTimeout(180_000);

afterEach(() => stopServices());

const SESSIONS = 16;
const BEFORE = 5;
const AFTER = 8;

/**
 * After a node dies, all its clients come back at once. The node that takes them rebuilds each
 * from its spool, at most half its database pool at a time: the others are refused at once with
 * 1013 `over_capacity` (never `database_unavailable`), and resume on their next try with nothing
 * lost.
 */
describe('a burst of resumes after a restart', () => {
  let dir: string;
  let databaseUrl: string;
  let db: Pool;

  beforeAll(async () => {
    dir = testDir('resume-burst');
    databaseUrl = await createTestDatabase();
    db = new Pool({ connectionString: databaseUrl, max: 2 });
  });
  afterAll(async () => {
    await db.end();
    await dropTestDatabase(databaseUrl);
    rmSync(dir, { recursive: true, force: true });
  });

  const env = () => ({
    DATA_DIR: join(dir, 'data'),
    DATABASE_URL: databaseUrl,
    AUTH_JWT_SECRET: TEST_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    // Two rebuilds at once.
    DB_POOL_MAX: '4',
    RECORDING_CAPACITY_FPS: '10000',
  });

  it('rebuilds sessions a few at a time, refuses the rest with over_capacity, and every one resumes', async () => {
    const frames = await jpegFrames(320, 240, 10);
    const token = hsToken({ sub: 'teller' });
    const first = new ServiceProcess(env(), dir);
    const url1 = await first.listening();
    const sessions: Opened[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const c = await StreamClient.connect(url1, { token });
      const opened = await c.open({ video: { width: 320, height: 240, fps: 10 } });
      for (let seq = 1; seq <= BEFORE; seq++) {
        c.sendFrame(seq, (seq - 1) * 100, frames[seq % 10]);
      }
      await c.acksUntil(BEFORE);
      sessions.push(opened);
    }
    expect((await first.stop('SIGKILL')).code).toBe(null);

    const second = new ServiceProcess(env(), dir);
    const url2 = await second.listening();
    const clients = await Promise.all(sessions.map(() => StreamClient.connect(url2, { token })));
    clients.forEach((c, i) =>
      c.send({
        type: 'resume',
        sessionId: sessions[i].sessionId,
        resumeToken: sessions[i].resumeToken,
      }),
    );
    const outcomes = await Promise.all(
      clients.map(async (c) => {
        const opened = await c.next('opened', 60_000).catch(() => null);
        return opened ? null : await c.closed;
      }),
    );
    const refused = outcomes.filter((o) => o !== null);
    expect(refused.length).toBeGreaterThan(0);
    for (const closed of refused) {
      expect(closed).toMatchObject({ code: 1013 });
      expect(closed?.reason).toMatch(/taking back as many sessions/);
    }

    // The refused come back (as a client does after Retry-After), and every session goes on.
    for (let i = 0; i < SESSIONS; i++) {
      let c = clients[i];
      for (let attempt = 0; outcomes[i] !== null && attempt < 20; attempt++) {
        await new Promise((r) => setTimeout(r, 200));
        c = await StreamClient.connect(url2, { token });
        c.send({
          type: 'resume',
          sessionId: sessions[i].sessionId,
          resumeToken: sessions[i].resumeToken,
        });
        outcomes[i] =
          (await c
            .next('opened', 60_000)
            .then(() => null)
            .catch(() => c.closed)) ?? null;
      }
      expect(outcomes[i]).toBeNull();
      for (let seq = BEFORE + 1; seq <= AFTER; seq++) {
        c.sendFrame(seq, (seq - 1) * 100, frames[seq % 10]);
      }
      await c.acksUntil(AFTER);
      c.send({ type: 'close' });
      const closed = await c.next('closed', 60_000);
      expect(closed).toMatchObject({ frames: AFTER, recording: { status: 'ready' } });
      const rec = await db.query<{ path: string }>(
        `SELECT path FROM recordings WHERE session_id = $1`,
        [sessions[i].sessionId],
      );
      expect((await probe(rec.rows[0].path)).videoFrames).toBe(AFTER);
    }

    const audits = await db.query<{ close_reason: string; n: number }>(
      `SELECT close_reason, count(*)::int AS n FROM connection_audits
        WHERE close_code = 1013 GROUP BY close_reason`,
    );
    expect(audits.rows).toEqual([{ close_reason: 'over_capacity', n: expect.any(Number) }]);
    await second.stop();
  });
});
