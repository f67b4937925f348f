import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { call, type JsonResponse, startTestApp, type TestApp } from './support/app';
import { jpegFrames } from './support/media';
import { rejectedHandshake, StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

const A_UUID = '00000000-0000-4000-8000-000000000000';

/** A route: method, path and body. Callbacks take it as a rest parameter: jest passes `done` to
 * a callback declaring more parameters than a row has cells, and waits for it. */
type Row = [string, string, unknown?];

interface Listed {
  items: Array<Record<string, unknown> & { id: string }>;
  nextCursor: string | null;
}

/** The ids of a list answer, in order. */
type AnyResponse = JsonResponse<Record<string, any>>;

function idsOf(res: AnyResponse): string[] {
  return (res.body as Listed).items.map((s) => s.id);
}

/** The `type` (or `status`) of each entry of a list in a response body. */
function fieldOf(list: unknown, field: string): unknown[] {
  return (list as Array<Record<string, unknown>>).map((e) => e[field]);
}

describe('admin API', () => {
  let app: TestApp;
  const admin = hsToken({ sub: 'ops-1', scope: 'admin' });
  const user = hsToken({ sub: 'alice', scope: 'stream:publish' });

  beforeAll(async () => {
    app = await startTestApp({
      // A refresh a minute apart: a quota applied before then was applied by the API itself.
      env: { QUOTA_REFRESH_MS: '60000', QUOTA_IP_HANDSHAKES_PER_MIN: '100000' },
    });
  });
  afterAll(() => app.close());

  async function createSession(
    params: Record<string, unknown>,
    token = hsToken({ sub: 'teller-1', channel: 'branch-app' }),
  ): Promise<string> {
    const res = await call(app.url, 'POST', '/v1/sessions', {
      token,
      body: { params, video: { width: 320, height: 240, fps: 10 } },
    });
    expect(res.status).toBe(201);
    return res.body.sessionId as string;
  }

  const get = (path: string, token = admin): Promise<AnyResponse> =>
    call(app.url, 'GET', path, { token });

  describe('access', () => {
    const routes: Array<Row> = [
      ['GET', '/v1/admin/sessions'],
      ['GET', `/v1/admin/sessions/${A_UUID}`],
      ['POST', `/v1/admin/sessions/${A_UUID}/disconnect`],
      ['GET', '/v1/admin/connections'],
      ['DELETE', `/v1/admin/connections/${A_UUID}`],
      ['GET', '/v1/admin/audits'],
      ['GET', '/v1/admin/channels'],
      ['GET', '/v1/admin/channels/branch-app/quota'],
      ['PUT', '/v1/admin/channels/branch-app/quota', { maxConnections: 5 }],
      ['GET', '/v1/admin/stats'],
      ['GET', '/v1/admin/webhooks'],
    ];

    it.each(routes)('%s %s answers 401 without a token', async (...[method, path, body]: Row) => {
      const res = await call(app.url, method, path, { body });
      expect(res.status).toBe(401);
      expect(res.body).toMatchObject({ error: 'invalid_token' });
    });

    it.each(routes)(
      '%s %s answers 403 without the admin scope',
      async (...[method, path, body]: Row) => {
        const res = await call(app.url, method, path, { token: user, body });
        expect(res.status).toBe(403);
        expect(res.body).toMatchObject({ error: 'insufficient_scope' });
      },
    );
  });

  describe('validation', () => {
    const bad: Array<Row> = [
      ['GET', '/v1/admin/sessions?status=bogus'],
      ['GET', '/v1/admin/sessions?unknownFilter=1'],
      ['GET', '/v1/admin/sessions?channel=a&channel=b'],
      ['GET', '/v1/admin/sessions?from=yesterday'],
      ['GET', '/v1/admin/sessions?limit=1000'],
      ['GET', '/v1/admin/sessions?limit=0'],
      ['GET', '/v1/admin/sessions?cursor=not-a-cursor'],
      ['GET', `/v1/admin/sessions?cursor=${Buffer.from('["x","y"]').toString('base64url')}`],
      ['GET', '/v1/admin/sessions?param.=x'],
      ['GET', '/v1/admin/sessions?param.transactionId=a&param.transactionId=b'],
      ['GET', '/v1/admin/sessions/not-a-uuid'],
      ['POST', '/v1/admin/sessions/not-a-uuid/disconnect'],
      ['GET', '/v1/admin/connections?verbose=1'],
      ['DELETE', '/v1/admin/connections/not-a-uuid'],
      ['GET', '/v1/admin/audits?outcome=bogus'],
      ['GET', '/v1/admin/audits?sessionId=1'],
      ['GET', '/v1/admin/audits?to=2026-13-45T00:00:00Z'],
      ['GET', '/v1/admin/audits?close_reason=kicked'],
      ['GET', '/v1/admin/channels?all=1'],
      ['GET', `/v1/admin/channels/${'c'.repeat(201)}/quota`],
      ['PUT', '/v1/admin/channels/branch-app/quota', { maxFps: 0 }],
      ['PUT', '/v1/admin/channels/branch-app/quota', { maxConnections: -1 }],
      ['PUT', '/v1/admin/channels/branch-app/quota', { maxConnections: '5' }],
      ['PUT', '/v1/admin/channels/branch-app/quota', { handshakesPerMin: 1.5 }],
      ['PUT', '/v1/admin/channels/branch-app/quota', { maxConnection: 5 }],
      ['PUT', '/v1/admin/channels/branch-app/quota', [1]],
      ['GET', '/v1/admin/stats?node=x'],
      ['GET', '/v1/admin/webhooks?state=bogus'],
      ['GET', '/v1/admin/webhooks?secret=1'],
      ['GET', '/v1/admin/webhooks?cursor=not-a-cursor'],
      ['GET', '/v1/admin/webhooks?from=yesterday'],
    ];

    it.each(bad)('%s %s answers 400 with the error body', async (...[method, path, body]: Row) => {
      const res = await call(app.url, method, path, { token: admin, body });
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ error: 'validation_failed' });
      expect(typeof res.body.message).toBe('string');
      expect(Array.isArray(res.body.fields)).toBe(true);
    });

    it('names each bad field of a query', async () => {
      const res = await get('/v1/admin/audits?outcome=bogus&limit=x&extra=1');
      expect(res.status).toBe(400);
      expect((res.body.fields as Array<{ field: string }>).map((f) => f.field).sort()).toEqual([
        'extra',
        'limit',
        'outcome',
      ]);
    });
  });

  describe('sessions', () => {
    it('finds sessions by param.<key> (string, number and several keys) and by channel, subject, status and time', async () => {
      const tx = `TX-${Date.now()}`;
      const a = await createSession({ transactionId: tx, amount: 5 });
      const b = await createSession(
        { transactionId: `${tx}-other`, amount: 5 },
        hsToken({ sub: 'teller-2', channel: 'kiosk' }),
      );
      const found = await get(`/v1/admin/sessions?param.transactionId=${tx}`);
      expect(found.status).toBe(200);
      expect(idsOf(found)).toEqual([a]);
      expect(found.body.items[0]).toMatchObject({
        id: a,
        subject: 'teller-1',
        channel: 'branch-app',
        status: 'open',
        params: { transactionId: tx, amount: 5 },
        node: 'test-node',
        videoFrames: 0,
      });
      expect(found.body.nextCursor).toBeNull();

      // A query string cannot say 5 or "5": both match; every filter must hold.
      const both = await get(`/v1/admin/sessions?param.amount=5&param.transactionId=${tx}-other`);
      expect(idsOf(both)).toEqual([b]);
      expect((await get(`/v1/admin/sessions?param.amount=5&channel=kiosk`)).body.items).toEqual([
        expect.objectContaining({ id: b }),
      ]);
      expect(
        (await get(`/v1/admin/sessions?param.transactionId=${tx}&subject=teller-2`)).body.items,
      ).toEqual([]);
      expect(
        (await get(`/v1/admin/sessions?param.transactionId=${tx}&status=closed`)).body.items,
      ).toEqual([]);
      const future = new Date(Date.now() + 3_600_000).toISOString();
      expect(
        (await get(`/v1/admin/sessions?param.transactionId=${tx}&from=${future}`)).body.items,
      ).toEqual([]);
      expect(
        (await get(`/v1/admin/sessions?param.transactionId=${tx}&to=${future}`)).body.items,
      ).toHaveLength(1);
    });

    it('treats parameter keys and values as data, not SQL', async () => {
      const key = `k'"); DROP TABLE sessions; --`;
      const id = await createSession({ [key]: `v' OR '1'='1` });
      const res = await get(
        `/v1/admin/sessions?${encodeURIComponent(`param.${key}`)}=${encodeURIComponent(`v' OR '1'='1`)}`,
      );
      expect(idsOf(res)).toEqual([id]);
      expect(
        (await get(`/v1/admin/sessions?${encodeURIComponent(`param.${key}`)}=x`)).body.items,
      ).toEqual([]);
    });

    it('pages with an opaque cursor, newest first, without repeats or gaps while sessions are added', async () => {
      const batch = `PAGE-${Date.now()}`;
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        ids.push(await createSession({ batch, i }));
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const res = await get(
          `/v1/admin/sessions?param.batch=${batch}&limit=2${cursor ? `&cursor=${cursor}` : ''}`,
        );
        seen.push(...idsOf(res));
        cursor = (res.body as Listed).nextCursor;
        if (seen.length === 2) {
          // Inserted between pages: newer than the cursor, so it belongs before the first page.
          await createSession({ batch, i: 99 });
        }
      } while (cursor !== null);
      expect(seen).toEqual([...ids].reverse());
    });

    it('finds a session by param.<key> through the GIN index (EXPLAIN of the query the API runs)', async () => {
      // Enough rows that the planner's choice means something; the same SQL as the API's.
      await app.db.query(
        `INSERT INTO sessions (id, subject, channel, status, params, video, resume_token_hash, node, created_at)
         SELECT gen_random_uuid(), 'bulk', 'bulk', 'closed',
                jsonb_build_object('transactionId', 'BULK-' || g, 'branch', g % 50),
                '{"width":320,"height":240}', 'x', 'bulk', now() - g * interval '1 second'
           FROM generate_series(1, 5000) g`,
      );
      await app.db.query('ANALYZE sessions');
      const { sessionSearchSql } = await import('../src/admin/admin-sessions.service');
      const { sql, params } = sessionSearchSql({
        params: [['transactionId', 'BULK-4242']],
        limit: 50,
      });
      const plan = await app.db.query(`EXPLAIN (FORMAT JSON) ${sql}`, params);
      const text = JSON.stringify(plan.rows[0]['QUERY PLAN']);
      expect(text).toContain('"Index Name":"ix_sessions_params"');
      const found = await get('/v1/admin/sessions?param.transactionId=BULK-4242');
      expect(found.body.items).toEqual([
        expect.objectContaining({
          subject: 'bulk',
          params: { transactionId: 'BULK-4242', branch: 42 },
        }),
      ]);
    });

    it('returns a session with its status history, connections, events, messages, counts and recording', async () => {
      const token = hsToken({ sub: 'teller-9', channel: 'branch-app' });
      const client = await StreamClient.connect(app.url, { token });
      const opened = await client.open({
        params: { transactionId: 'TX-DETAIL' },
        video: { width: 320, height: 240, fps: 10 },
      });
      const [frame] = await jpegFrames(320, 240, 1);
      for (let seq = 1; seq <= 3; seq++) {
        client.ws.send(encodeMediaMessage(Track.Video, seq, seq * 100, frame));
      }
      await client.acksUntil(3);
      client.send({ type: 'msg', id: 'm1', body: { text: 'signed' } });
      await client.next('msg.ack');
      client.send({ type: 'close' });
      await client.next('closed');
      await client.closed;

      const id = opened.sessionId;
      await waitFor(async () => {
        const r = await get(`/v1/admin/sessions/${id}`);
        const [connection] = (r.body.connections ?? []) as Array<{ close: unknown }>;
        return (
          connection !== undefined &&
          connection.close !== null &&
          r.body.recording?.status === 'ready'
        );
      });
      const res = await get(`/v1/admin/sessions/${id}`);
      expect(res.status).toBe(200);
      expect(res.body.session).toMatchObject({
        id,
        subject: 'teller-9',
        status: 'closed',
        params: { transactionId: 'TX-DETAIL' },
        lastSeq: 3,
        videoFrames: 3,
      });
      expect(fieldOf(res.body.statusHistory, 'status')).toEqual(['open', 'closed']);
      expect(res.body.connections).toEqual([
        expect.objectContaining({
          outcome: 'accepted',
          subject: 'teller-9',
          sessionId: id,
          close: expect.objectContaining({
            closeCode: 1000,
            closeReason: 'normal',
            closedBy: null,
          }),
        }),
      ]);
      expect(fieldOf(res.body.events, 'type')).toEqual(
        expect.arrayContaining(['created', 'attached']),
      );
      expect(res.body.messages).toEqual([
        expect.objectContaining({
          direction: 'in',
          clientId: 'm1',
          body: { text: 'signed' },
          recordingMs: expect.any(Number),
        }),
      ]);
      expect(res.body.recording).toMatchObject({ status: 'ready', frameCount: 3 });
      expect(res.body.truncated).toBe(false);
      expect((await get(`/v1/admin/sessions/${A_UUID}`)).status).toBe(404);
    });
  });

  describe('connections and kick', () => {
    it('lists live connections and kicks one with 4003; its audit row says kicked and names the admin', async () => {
      const client = await StreamClient.connect(app.url, {
        token: hsToken({ sub: 'kiosk-7', channel: 'kiosk' }),
      });
      const opened = await client.open();
      const list = await get('/v1/admin/connections');
      expect(list.status).toBe(200);
      const mine = (list.body.items as Array<Record<string, unknown>>).find(
        (c) => c.sessionId === opened.sessionId,
      );
      expect(mine).toMatchObject({
        subject: 'kiosk-7',
        channel: 'kiosk',
        transport: 'ws',
        remoteAddress: '127.0.0.1',
        framesIn: 0,
      });
      const connectionId = mine?.id as string;

      const kicked = await call(app.url, 'DELETE', `/v1/admin/connections/${connectionId}`, {
        token: admin,
      });
      expect(kicked.status).toBe(200);
      expect(kicked.body).toEqual({
        connectionId,
        sessionId: opened.sessionId,
        node: 'test-node',
        kicked: true,
      });
      expect((await client.closed).code).toBe(4003);

      await waitFor(async () => {
        const r = await app.db.query(
          `SELECT close_reason, closed_by, close_code FROM connection_audits WHERE id = $1`,
          [connectionId],
        );
        return r.rows[0]?.close_reason === 'kicked';
      });
      const audits = await get(`/v1/admin/audits?closeReason=kicked&subject=kiosk-7`);
      expect(audits.body.items).toEqual([
        expect.objectContaining({
          id: connectionId,
          close: expect.objectContaining({
            closeCode: 4003,
            closeReason: 'kicked',
            closedBy: 'ops-1',
          }),
        }),
      ]);
      await waitFor(async () => {
        const r = await app.db.query(
          `SELECT subject, detail FROM admin_actions WHERE action = 'kick' AND target = $1`,
          [connectionId],
        );
        return r.rows[0]?.subject === 'ops-1';
      });
      // Gone from the list, and a second kick finds nothing.
      await waitFor(async () =>
        idsOf(await get('/v1/admin/connections')).every((id) => id !== connectionId),
      );
      expect(
        (await call(app.url, 'DELETE', `/v1/admin/connections/${connectionId}`, { token: admin }))
          .status,
      ).toBe(404);
    });

    it('still disconnects by session id, audited with the admin', async () => {
      const client = await StreamClient.connect(app.url, { token: hsToken({ sub: 'kiosk-8' }) });
      const opened = await client.open();
      const res = await call(app.url, 'POST', `/v1/admin/sessions/${opened.sessionId}/disconnect`, {
        token: admin,
      });
      expect(res.body).toEqual({
        sessionId: opened.sessionId,
        disconnected: true,
        node: 'test-node',
      });
      expect((await client.closed).code).toBe(4003);
      await waitFor(async () => {
        const r = await app.db.query(
          `SELECT closed_by FROM connection_audits WHERE session_id = $1 AND close_reason = 'kicked'`,
          [opened.sessionId],
        );
        return r.rows[0]?.closed_by === 'ops-1';
      });
    });
  });

  describe('audits', () => {
    it('filters by outcome, remote address, channel and time, and pages', async () => {
      await call(app.url, 'GET', '/v1/admin/stats', { token: 'not-a-token' });
      const since = new Date(Date.now() - 60_000).toISOString();
      await waitFor(async () => {
        const r = await get(`/v1/admin/audits?outcome=rejected_auth&remoteAddress=127.0.0.1`);
        return r.body.items?.length > 0;
      });
      const refused = await get(
        `/v1/admin/audits?outcome=rejected_auth&remoteAddress=127.0.0.1&transport=http&from=${since}`,
      );
      expect(refused.status).toBe(200);
      // Refusals of the wrong scope (the 403 tests) and of no token share the outcome.
      expect(refused.body.items).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            outcome: 'rejected_auth',
            remoteAddress: '127.0.0.1',
            transport: 'http',
            error: 'invalid_token',
          }),
        ]),
      );
      expect(refused.body.items[0].count).toBeGreaterThanOrEqual(1);

      const before = await app.db.query<{ id: string }>(`SELECT id FROM connection_audits`);
      const all: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await get(`/v1/admin/audits?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
        all.push(...idsOf(page));
        cursor = (page.body as Listed).nextCursor;
      } while (cursor !== null);
      expect(new Set(all).size).toBe(all.length);
      expect(all).toEqual(expect.arrayContaining(before.rows.map((r) => r.id)));
      expect((await get(`/v1/admin/audits?channel=no-such-channel`)).body).toEqual({
        items: [],
        nextCursor: null,
      });
    });
  });

  describe('channels and quotas', () => {
    it('lists channels with live connections and effective quotas', async () => {
      const client = await StreamClient.connect(app.url, {
        token: hsToken({ channel: 'listed-channel' }),
      });
      const res = await get('/v1/admin/channels');
      expect(res.status).toBe(200);
      expect(res.body.defaults).toEqual({
        maxConnections: 1000,
        handshakesPerMin: 600,
        maxFps: 30,
        maxKbps: 16000,
        videoCodecs: ['jpeg', 'avc', 'vp8', 'vp9'],
        maxWidth: 1920,
        maxHeight: 1080,
      });
      expect(res.body.channels).toEqual(
        expect.arrayContaining([
          {
            channel: 'listed-channel',
            connections: 1,
            effective: res.body.defaults,
            override: null,
          },
        ]),
      );
      client.close();
      await client.closed;
    });

    it('a quota set through the API refuses the next handshake over it with 429, without a restart, and is audited', async () => {
      const token = hsToken({ channel: 'quota-chan' });
      const first = await StreamClient.connect(app.url, { token });
      const put = await call(app.url, 'PUT', '/v1/admin/channels/quota-chan/quota', {
        token: admin,
        body: { maxConnections: 1, maxFps: 12 },
      });
      expect(put.status).toBe(200);
      expect(put.body).toMatchObject({
        channel: 'quota-chan',
        effective: { maxConnections: 1, handshakesPerMin: 600, maxFps: 12, maxKbps: 16000 },
        override: { maxConnections: 1, handshakesPerMin: null, maxFps: 12, maxKbps: null },
      });
      // The next handshake, with the periodic refresh a minute away.
      const refused = await rejectedHandshake(app.url, { token });
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({ error: 'quota_exceeded' });
      expect((await get('/v1/admin/channels/quota-chan/quota')).body.effective.maxConnections).toBe(
        1,
      );
      await waitFor(async () => {
        const r = await app.db.query(
          `SELECT subject, detail FROM admin_actions WHERE action = 'quota_set' AND target = 'quota-chan'`,
        );
        return r.rows[0]?.subject === 'ops-1' && r.rows[0].detail.after.maxConnections === 1;
      });

      // Raised again: the next handshake is admitted; {} goes back to the defaults.
      await call(app.url, 'PUT', '/v1/admin/channels/quota-chan/quota', {
        token: admin,
        body: { maxConnections: 2 },
      });
      const second = await StreamClient.connect(app.url, { token });
      const reset = await call(app.url, 'PUT', '/v1/admin/channels/quota-chan/quota', {
        token: admin,
        body: {},
      });
      expect(reset.body).toMatchObject({ override: null, effective: reset.body.defaults });
      [first, second].forEach((c) => c.close());
      await Promise.all([first.closed, second.closed]);
    });
    it('audits concurrent quota changes of a channel as one chain (each replaced the one before)', async () => {
      const values = [10, 11, 12, 13, 14];
      const answers = await Promise.all(
        values.map((maxConnections) =>
          call(app.url, 'PUT', '/v1/admin/channels/chain-chan/quota', {
            token: admin,
            body: { maxConnections },
          }),
        ),
      );
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
      let rows: Array<{ before: number | null; after: number }> = [];
      await waitFor(async () => {
        const r = await app.db.query<{
          detail: { before: { maxConnections: number } | null; after: { maxConnections: number } };
        }>(`SELECT detail FROM admin_actions WHERE action = 'quota_set' AND target = 'chain-chan'`);
        rows = r.rows.map((x) => ({
          before: x.detail.before?.maxConnections ?? null,
          after: x.detail.after.maxConnections,
        }));
        return rows.length === values.length;
      });
      // One change found no override; every other replaced a different earlier one.
      const befores = rows.map((r) => r.before);
      expect(befores.filter((b) => b === null)).toHaveLength(1);
      expect(new Set(befores).size).toBe(values.length);
      const afters = new Set(rows.map((r) => r.after));
      befores.forEach((b) => b === null || expect(afters.has(b)).toBe(true));
    });
  });

  describe('stats', () => {
    it('returns connections by channel, sessions by status, recordings by status and bytes, and backlogs', async () => {
      const client = await StreamClient.connect(app.url, {
        token: hsToken({ channel: 'stats-ch' }),
      });
      const res = await get('/v1/admin/stats');
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        node: 'test-node',
        connectionsByChannel: expect.objectContaining({ 'stats-ch': 1 }),
        sessionsByStatus: expect.objectContaining({ open: expect.any(Number) }),
        backlogs: {
          spool: { sessions: expect.any(Number), frames: expect.any(Number) },
          encoder: { waitingSessions: expect.any(Number), frames: expect.any(Number) },
          audit: { records: expect.any(Number) },
        },
      });
      expect(res.body.recordingsByStatus.ready).toEqual({
        count: expect.any(Number),
        bytes: expect.any(Number),
      });
      expect(res.body.recordingsByStatus.ready.bytes).toBeGreaterThan(0);
      client.close();
      await client.closed;
    });
  });
});
