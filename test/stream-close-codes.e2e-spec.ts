import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { call, startTestApp, type TestApp } from './support/app';
import { testDir } from './support/dirs';
import { PgProcess } from './support/pg-process';
import { payloadFor, StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

/** Every close code of the spec, each provoked by what causes it. */
describe('close codes', () => {
  let dir: string;
  let pg: PgProcess;
  let app: TestApp;
  const token = hsToken({ sub: 'alice', channel: 'branch-app' });

  beforeAll(async () => {
    dir = testDir('close-codes');
    pg = new PgProcess(join(dir, 'postgres'), 0);
    const url = new URL(await pg.start());
    url.pathname = '/framegate';
    app = await startTestApp({
      databaseUrl: url.toString(),
      env: {
        MAX_FRAME_BYTES: '65536',
        HEARTBEAT_INTERVAL_MS: '200',
        // Long enough that a worker stalled by a busy machine does not miss a pong.
        HEARTBEAT_TIMEOUT_MS: '2000',
        RESUME_WINDOW_MS: '1500',
        STREAM_FLOW_GRACE_MS: '400',
        QUOTA_REFRESH_MS: '100',
      },
    });
  });
  afterAll(async () => {
    await app.close();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function opened(t = token) {
    const client = await StreamClient.connect(app.url, { token: t });
    const o = await client.open();
    return { client, o };
  }

  async function closeReason(code: number) {
    let reason: string | null = null;
    await waitFor(async () => {
      const r = await app.db.query<{ close_reason: string | null }>(
        `SELECT close_reason FROM connection_audits WHERE close_code = $1 ORDER BY closed_at DESC LIMIT 1`,
        [code],
      );
      reason = r.rows[0]?.close_reason ?? null;
      return reason !== null;
    });
    return reason;
  }

  it('1000 after closed', async () => {
    const { client } = await opened();
    client.send({ type: 'close', reason: 'done' });
    await client.next('closed');
    expect((await client.closed).code).toBe(1000);
    expect(await closeReason(1000)).toBe('normal');
  });

  it('1009 for a media message over MAX_FRAME_BYTES', async () => {
    const { client } = await opened();
    client.sendFrame(1, 0, Buffer.alloc(70_000));
    expect((await client.closed).code).toBe(1009);
    expect(await closeReason(1009)).toBe('message_too_large');
  });

  it.each([
    ['invalid JSON', (c: StreamClient) => c.ws.send('{"type": "open",')],
    ['an unknown type', (c: StreamClient) => c.send({ type: 'teleport' })],
    [
      'a bad media header',
      (c: StreamClient) => c.ws.send(Buffer.from([2, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 9])),
    ],
    ['a seq gap', (c: StreamClient) => c.sendFrame(5, 0, payloadFor(5))],
  ])('4000 for %s', async (_name, misbehave) => {
    const { client } = await opened();
    misbehave(client);
    expect((await client.closed).code).toBe(4000);
  });

  it('4000 for media before opened', async () => {
    const client = await StreamClient.connect(app.url, { token });
    client.sendFrame(1, 0, payloadFor(1));
    expect((await client.closed).code).toBe(4000);
    expect(await closeReason(4000)).toBe('protocol_error');
  });

  it('answers an invalid open with a recoverable error, and the connection stays', async () => {
    const client = await StreamClient.connect(app.url, { token });
    client.send({ type: 'open', video: { width: 0, height: 480, fps: 10 } });
    expect(await client.next('error')).toMatchObject({ code: 'validation_failed' });
    expect((await client.open()).lastSeq).toBe(0);
    client.send({ type: 'open', video: { width: 320, height: 240, fps: 5 } });
    expect(await client.next('error')).toMatchObject({ code: 'invalid_state' });
    client.close();
  });

  it('4001 when the token expires, unless refreshed with auth for the same subject', async () => {
    // Long enough for the refreshed connection's three round trips on a busy machine.
    const shortLived = hsToken({ expiresIn: 4 });
    const expiring = await StreamClient.connect(app.url, { token: shortLived });
    const refreshed = await StreamClient.connect(app.url, { token: shortLived });
    refreshed.send({ type: 'auth', token: hsToken({ sub: 'mallory', expiresIn: 3600 }) });
    expect(await refreshed.next('error')).toMatchObject({ code: 'insufficient_scope' });
    refreshed.send({ type: 'auth', token: 'not-a-token' });
    expect(await refreshed.next('error')).toMatchObject({ code: 'invalid_token' });
    refreshed.send({ type: 'auth', token: hsToken({ expiresIn: 3600 }) });
    expect((await expiring.closed).code).toBe(4001);
    expect(await closeReason(4001)).toBe('token_expired');
    // Keep the refreshed one busy past the old expiry; it must still be open.
    refreshed.send({ type: 'ping', t: 1 });
    await refreshed.next('pong');
    expect(refreshed.ws.readyState).toBe(refreshed.ws.OPEN);
    refreshed.close();
  });

  it('4003 when an administrator disconnects the session', async () => {
    const { client, o } = await opened();
    const admin = hsToken({ sub: 'ops', scope: 'admin' });
    expect(
      (await call(app.url, 'POST', `/v1/admin/sessions/${o.sessionId}/disconnect`, { token }))
        .status,
    ).toBe(403);
    const res = await call(app.url, 'POST', `/v1/admin/sessions/${o.sessionId}/disconnect`, {
      token: admin,
    });
    expect(res.body).toEqual({ sessionId: o.sessionId, disconnected: true, node: 'test-node' });
    expect((await client.closed).code).toBe(4003);
    expect(await closeReason(4003)).toBe('kicked');
  });

  it('4004 for a resume after the window, and the session is abandoned', async () => {
    const { client, o } = await opened();
    client.sendFrame(1, 0, payloadFor(1));
    await client.acksUntil(1);
    client.ws.terminate();
    await waitFor(async () => {
      const r = await app.db.query<{ status: string }>(
        'SELECT status FROM sessions WHERE id = $1',
        [o.sessionId],
      );
      return r.rows[0]?.status === 'abandoned';
    });
    const late = await StreamClient.connect(app.url, { token });
    late.send({ type: 'resume', sessionId: o.sessionId, resumeToken: o.resumeToken });
    expect((await late.closed).code).toBe(4004);
    const unknown = await StreamClient.connect(app.url, { token });
    unknown.send({
      type: 'resume',
      sessionId: '00000000-0000-4000-8000-000000000000',
      resumeToken: o.resumeToken,
    });
    expect((await unknown.closed).code).toBe(4004);
  });

  it('4008 for a client that stops answering pings, audited heartbeat_timeout', async () => {
    const client = await StreamClient.connect(app.url, { token, autoPong: false });
    const { code } = await client.closed;
    expect(code).toBe(4008);
    expect(await closeReason(4008)).toBe('heartbeat_timeout');
  });

  it('keeps a client that answers pings but sends nothing', async () => {
    const client = await StreamClient.connect(app.url, { token });
    // Pings go out at most every 200 ms: once the eleventh has arrived, the server has waited past
    // its 2000 ms timeout, however slowly the machine runs.
    let pings = 0;
    client.ws.on('ping', () => pings++);
    await waitFor(() => pings >= 11 || client.ws.readyState !== client.ws.OPEN, 60_000, '11 pings');
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    client.close();
  });

  it('4029 for a client that ignores flow', async () => {
    await app.db.query(`INSERT INTO channel_quotas (channel, max_fps) VALUES ('slow-lane', 5)`);
    await app.started.app.get((await import('../src/stream/quota.service')).QuotaService).refresh();
    const slow = hsToken({ channel: 'slow-lane' });
    const { client } = await opened(slow);
    let seq = 0;
    const timer = setInterval(() => {
      for (let i = 0; i < 5 && client.ws.readyState === client.ws.OPEN; i++) {
        seq++;
        client.sendFrame(seq, seq * 10, payloadFor(seq));
      }
    }, 50);
    try {
      const flow = await client.next('flow');
      expect(flow).toMatchObject({ maxFps: 5 });
      expect((await client.closed).code).toBe(4029);
    } finally {
      clearInterval(timer);
    }
    expect(await closeReason(4029)).toBe('quota_exceeded');
  });

  it('1013 when the database is unavailable under a handler', async () => {
    const { client } = await opened();
    await pg.stop();
    try {
      client.send({ type: 'msg', id: 'during-outage', body: { n: 1 } });
      expect((await client.closed).code).toBe(1013);
    } finally {
      await pg.start();
    }
    expect(await closeReason(1013)).toBe('database_unavailable');
  });
});
