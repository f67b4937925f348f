import { randomUUID } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AuditWriter } from '../src/audit/audit-writer.service';
import type { ConnectionAuditRecord } from '../src/audit/audit.types';
import { call, startTestApp, type TestApp } from './support/app';
import { testDir } from './support/dirs';
import { PgProcess } from './support/pg-process';
import { waitFor } from './support/wait';
import { hsToken } from './support/tokens';

function connection(i: number, closed: boolean): ConnectionAuditRecord {
  const at = new Date();
  return {
    kind: 'connection',
    id: randomUUID(),
    at,
    node: 'test-node',
    transport: 'ws',
    remoteAddress: '10.0.0.7',
    userAgent: `kiosk/${i}`,
    origin: null,
    subject: `user-${i}`,
    channel: 'branch-app',
    outcome: 'accepted',
    error: null,
    sessionId: null,
    ...(closed
      ? {
          close: {
            closedAt: new Date(at.getTime() + 1000),
            closeCode: 1000,
            closeReason: 'normal',
            durationMs: 1000,
            bytesIn: 100 * i,
            bytesOut: 10,
            framesIn: i,
            framesOut: 0,
          },
        }
      : {}),
  };
}

describe('audit writer across a database outage', () => {
  let dir: string;
  let pg: PgProcess;
  let app: TestApp;
  let writer: AuditWriter;

  beforeAll(async () => {
    dir = testDir('audit');
    pg = new PgProcess(join(dir, 'postgres'), 0);
    const adminUrl = await pg.start();
    const url = new URL(adminUrl);
    url.pathname = '/framegate';
    app = await startTestApp({
      databaseUrl: url.toString(),
      env: { AUDIT_FLUSH_INTERVAL_MS: '50', AUDIT_REPLAY_INTERVAL_MS: '200' },
    });
    writer = app.started.app.get(AuditWriter);
  });
  afterAll(async () => {
    await app.close();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('journals records while Postgres is down and lands every one exactly once after', async () => {
    const expected = new Map<string, ConnectionAuditRecord>();
    const emit = (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const open = connection(i, false);
        writer.record(open);
        expected.set(open.id, open);
        if (i % 2 === 0) {
          // The close of the same connection, recorded in full later.
          const closed = { ...open, close: connection(i, true).close };
          writer.record(closed);
          expected.set(open.id, closed);
        }
      }
    };
    const rejectedBefore = await call(app.url, 'POST', '/v1/tickets', { token: 'garbage' });
    expect(rejectedBefore.status).toBe(401);
    emit(0, 100);
    await waitFor(() => writer.backlog() === 0);

    await pg.stop();
    emit(100, 400);
    const rejectedDuring = await call(app.url, 'POST', '/v1/tickets', {
      token: hsToken({ expiresIn: -10 }),
      headers: { 'user-agent': 'during-outage' },
    });
    expect(rejectedDuring.status).toBe(401);
    await writer.flushNow();
    expect(writer.backlog()).toBeGreaterThanOrEqual(300);
    const journal = readdirSync(join(app.dataDir, 'audit-journal'));
    expect(journal.some((f) => f.endsWith('.jsonl'))).toBe(true);

    await pg.start();
    await waitFor(() => writer.backlog() === 0);

    const rows = await app.db.query<{
      id: string;
      close_code: number | null;
      frames_in: string | null;
    }>(`SELECT id, close_code, frames_in FROM connection_audits WHERE transport = 'ws'`);
    expect(rows.rows).toHaveLength(expected.size);
    for (const row of rows.rows) {
      const record = expected.get(row.id);
      expect(record).toBeDefined();
      expect(row.close_code).toBe(record?.close ? 1000 : null);
    }
    // Both refusals came from this address for the same reason: one row (written before the
    // outage) whose count reached 2 through the journal.
    const http = await app.db.query<{ outcome: string; error: string; count: number }>(
      `SELECT outcome, error, count FROM connection_audits WHERE transport = 'http' ORDER BY at`,
    );
    expect(http.rows).toEqual([{ outcome: 'rejected_auth', error: 'invalid_token', count: 2 }]);
    expect(
      readdirSync(join(app.dataDir, 'audit-journal')).filter((f) => f.startsWith('replay-')),
    ).toEqual([]);

    // Replaying the same records again (a crash between insert and journal removal) adds nothing.
    for (const record of expected.values()) {
      writer.record(record);
    }
    await writer.flushNow();
    const again = await app.db.query(
      `SELECT count(*)::int AS n FROM connection_audits WHERE transport = 'ws'`,
    );
    expect(again.rows[0].n).toBe(expected.size);
  });

  it('records a session event when a session is opened over HTTP', async () => {
    const res = await call(app.url, 'POST', '/v1/sessions', {
      token: hsToken(),
      body: { video: { width: 320, height: 240, fps: 5 } },
    });
    expect(res.status).toBe(201);
    await waitFor(() => writer.backlog() === 0);
    const events = await app.db.query(
      `SELECT type, detail FROM session_events WHERE session_id = $1 ORDER BY at, type DESC`,
      [res.body.sessionId],
    );
    expect(events.rows).toEqual([
      { type: 'created', detail: { subject: 'alice', channel: 'branch-app' } },
      { type: 'attached', detail: { transport: 'http', cause: 'opened', lastSeq: 0 } },
    ]);
  });
});
