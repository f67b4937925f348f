import { request as httpRequest } from 'node:http';
import { call, startTestApp, type TestApp } from './support/app';
import { rejectedHandshake, StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

describe('WebSocket handshake', () => {
  let app: TestApp;
  const token = hsToken({ sub: 'alice', channel: 'branch-app' });

  beforeAll(async () => {
    app = await startTestApp({
      env: { ALLOWED_ORIGINS: 'https://counter.bank.test', QUOTA_REFRESH_MS: '100' },
    });
  });
  afterAll(() => app.close());

  const audits = async (outcome: string) =>
    (
      await app.db.query<{
        outcome: string;
        error: string | null;
        user_agent: string | null;
        count: number;
      }>(
        `SELECT outcome, error, subject, channel, user_agent, count FROM connection_audits WHERE outcome = $1`,
        [outcome],
      )
    ).rows;

  it('accepts a bearer token, selects framegate.v1, and audits the connection', async () => {
    const client = await StreamClient.connect(app.url, {
      token,
      headers: { 'user-agent': 'kiosk-7' },
    });
    expect(client.ws.protocol).toBe('framegate.v1');
    client.close();
    await client.closed;
    await waitFor(async () => (await audits('accepted')).some((r) => r.user_agent === 'kiosk-7'));
    const row = (await app.db.query(`SELECT * FROM connection_audits WHERE user_agent = 'kiosk-7'`))
      .rows[0];
    await waitFor(async () => {
      const r = (
        await app.db.query(`SELECT close_code FROM connection_audits WHERE id = $1`, [row.id])
      ).rows[0];
      return r?.close_code !== null;
    });
    const closed = (await app.db.query(`SELECT * FROM connection_audits WHERE id = $1`, [row.id]))
      .rows[0];
    expect(closed).toMatchObject({
      transport: 'ws',
      subject: 'alice',
      channel: 'branch-app',
      outcome: 'accepted',
      remote_address: '127.0.0.1',
      close_code: 1005,
      close_reason: 'client_closed',
    });
  });

  it('accepts a single-use ticket once, and refuses it the second time with 401', async () => {
    const issued = await call(app.url, 'POST', '/v1/tickets', { token });
    const ticket = String(issued.body.ticket);
    const client = await StreamClient.connect(app.url, { ticket });
    const opened = await client.open();
    expect(opened.sessionId).toBeDefined();
    client.close();
    const again = await rejectedHandshake(app.url, { ticket });
    expect(again.status).toBe(401);
    expect(again.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    expect(again.body.error).toBe('invalid_token');
  });

  it('lets exactly one of 20 concurrent handshakes with one ticket through', async () => {
    const issued = await call(app.url, 'POST', '/v1/tickets', { token });
    const ticket = String(issued.body.ticket);
    const attempts = await Promise.allSettled(
      Array.from({ length: 20 }, () => StreamClient.connect(app.url, { ticket })),
    );
    const winners = attempts.filter(
      (a): a is PromiseFulfilledResult<StreamClient> => a.status === 'fulfilled',
    );
    expect(winners).toHaveLength(1);
    winners[0]?.value.close();
  });

  it.each([
    ['no credentials', {}, 401, 'invalid_token'],
    ['an expired token', { token: hsToken({ expiresIn: -30 }) }, 401, 'invalid_token'],
    [
      'a token with a bad signature',
      { token: hsToken({ secret: 'x'.repeat(40) }) },
      401,
      'invalid_token',
    ],
    ['an unknown ticket', { ticket: 'A'.repeat(43) }, 401, 'invalid_token'],
    [
      'a token without stream:publish',
      { token: hsToken({ scope: 'recording:read' }) },
      403,
      'insufficient_scope',
    ],
    ['a foreign Origin', { token, origin: 'https://evil.test' }, 403, 'origin_not_allowed'],
    ['no subprotocol', { token, protocol: null }, 400, 'bad_request'],
  ])('refuses %s before the upgrade', async (_name, options, status, error) => {
    const res = await rejectedHandshake(app.url, options);
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(error);
    expect(typeof res.body.message).toBe('string');
  });

  it('accepts an allowed Origin and the service’s own origin', async () => {
    const allowed = await StreamClient.connect(app.url, {
      token,
      origin: 'https://counter.bank.test',
    });
    allowed.close();
    const same = await StreamClient.connect(app.url, { token, origin: app.url });
    same.close();
  });

  it('audits every refusal with its outcome', async () => {
    // Repeated refusals from one address and reason share a row with a count: count them all.
    const refused = async () =>
      (await audits('rejected_origin'))
        .filter((r) => r.error === 'origin_not_allowed')
        .reduce((n, r) => n + r.count, 0);
    const before = await refused();
    await rejectedHandshake(app.url, {
      token,
      origin: 'https://evil2.test',
      headers: { 'user-agent': 'evil-agent' },
    });
    await waitFor(async () => (await refused()) >= before + 1);
    await waitFor(async () => (await audits('rejected_auth')).length > 0);
    await waitFor(async () => (await audits('rejected_protocol')).length > 0);
  });

  it('404s an upgrade on another path', async () => {
    const res = await new Promise<number>((resolve) => {
      const req = httpRequest(`${app.url}/v1/elsewhere`, {
        headers: {
          connection: 'Upgrade',
          upgrade: 'websocket',
          'sec-websocket-version': '13',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        },
      });
      req.on('response', (r) => resolve(r.statusCode ?? 0));
      req.on('upgrade', () => resolve(101));
      req.on('error', () => resolve(-1));
      req.end();
    });
    expect(res).toBe(404);
  });
});

describe('WebSocket handshake behind a trusted proxy', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp({ env: { TRUST_PROXY: 'loopback' } });
  });
  afterAll(() => app.close());

  it('audits the client address from X-Forwarded-For of a trusted proxy', async () => {
    const client = await StreamClient.connect(app.url, {
      token: hsToken(),
      headers: { 'x-forwarded-for': '203.0.113.9', 'user-agent': 'behind-proxy' },
    });
    client.close();
    await waitFor(async () => {
      const r = await app.db.query<{ remote_address: string }>(
        `SELECT remote_address FROM connection_audits WHERE user_agent = 'behind-proxy'`,
      );
      return r.rows[0]?.remote_address === '203.0.113.9';
    });
  });
});
