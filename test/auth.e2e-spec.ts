import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import jwt from 'jsonwebtoken';
import { TicketsService } from '../src/auth/tickets.service';
import { call, startTestApp, type TestApp } from './support/app';
import { rejectedHandshake, StreamClient } from './support/stream-client';
import {
  ecKey,
  hsToken,
  jwkOf,
  keyToken,
  noneToken,
  rsaKey,
  type SigningKey,
} from './support/tokens';

function expectInvalidToken(
  res: { status: number; headers: Headers; body: Record<string, unknown> },
  message: RegExp,
) {
  expect(res.status).toBe(401);
  expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
  expect(res.body.error).toBe('invalid_token');
  expect(String(res.body.message)).toMatch(message);
}

describe('access tokens (HS256 secret, issuer and audience configured)', () => {
  let app: TestApp;
  const iss = 'https://idp.example.test/';
  const aud = 'framegate';

  beforeAll(async () => {
    app = await startTestApp({ env: { AUTH_ISSUER: iss, AUTH_AUDIENCE: aud } });
  });
  afterAll(() => app.close());

  const ticket = (token: string | undefined, headers?: Record<string, string>) =>
    call(app.url, 'POST', '/v1/tickets', { token, headers });

  it('accepts a valid token', async () => {
    const res = await ticket(hsToken({ issuer: iss, audience: aud }));
    expect(res.status).toBe(201);
    expect(typeof res.body.ticket).toBe('string');
  });

  it('rejects an expired token', async () => {
    expectInvalidToken(
      await ticket(hsToken({ issuer: iss, audience: aud, expiresIn: -60 })),
      /expired/,
    );
  });

  it('rejects a token that is not yet valid', async () => {
    expectInvalidToken(
      await ticket(hsToken({ issuer: iss, audience: aud, notBefore: 600 })),
      /not yet valid/,
    );
  });

  it('rejects a bad signature', async () => {
    expectInvalidToken(
      await ticket(
        hsToken({
          issuer: iss,
          audience: aud,
          secret: 'another-secret-another-secret-another-secret',
        }),
      ),
      /signature/,
    );
  });

  it('rejects alg none', async () => {
    expectInvalidToken(await ticket(noneToken()), /algorithm|signature|not accepted/);
  });

  it('rejects a wrong issuer', async () => {
    expectInvalidToken(
      await ticket(hsToken({ issuer: 'https://evil.test/', audience: aud })),
      /issuer/,
    );
  });

  it('rejects a wrong audience', async () => {
    expectInvalidToken(
      await ticket(hsToken({ issuer: iss, audience: 'someone-else' })),
      /audience/,
    );
  });

  it('rejects a token without exp', async () => {
    const token = jwt.sign(
      { sub: 'alice', channel: 'branch-app', scope: 'stream:publish', iss, aud },
      'test-secret-that-is-long-enough-for-hs256-0123456789',
      { algorithm: 'HS256' },
    );
    expectInvalidToken(await ticket(token), /exp/);
  });

  it('refuses a token without the needed scope with 403', async () => {
    const res = await ticket(hsToken({ issuer: iss, audience: aud, scope: 'recording:read' }));
    expect(res.status).toBe(403);
    expect(res.body).toEqual({
      error: 'insufficient_scope',
      message: 'this needs the scope stream:publish',
    });
  });

  it.each([
    ['no header', {}],
    ['a Basic header', { authorization: 'Basic YWxpY2U6c2VjcmV0' }],
    ['an empty bearer', { authorization: 'Bearer ' }],
    ['a bearer that is not a JWT', { authorization: 'Bearer not-a.jwt' }],
  ])('rejects a malformed authorization header: %s', async (_name, headers) => {
    expectInvalidToken(await ticket(undefined, headers), /token/);
  });

  it.each([
    ['an unaccepted algorithm', () => noneToken({ issuer: iss, audience: aud })],
    ['an RS256 token without a JWKS', () => keyToken(rsaKey('k'), { issuer: iss, audience: aud })],
    ['a bad signature', () => `${hsToken({ issuer: iss, audience: aud })}x`],
    ['an expired token', () => hsToken({ issuer: iss, audience: aud, expiresIn: -60 })],
  ])('words a WebSocket 401 for %s as the HTTP side does', async (_name, token) => {
    const t = token();
    const http = await ticket(t);
    const ws = await rejectedHandshake(app.url, { token: t });
    expect(http.status).toBe(401);
    expect(ws.status).toBe(401);
    expect(ws.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    expect(ws.body).toEqual(http.body);
    expect(String(ws.body.message)).not.toMatch(/callback/);
  });

  it('accepts the bearer scheme in any case over WebSocket, as over HTTP (RFC 7235)', async () => {
    const t = hsToken({ issuer: iss, audience: aud });
    for (const scheme of ['bearer', 'BEARER', 'bEaReR']) {
      expect((await ticket(undefined, { authorization: `${scheme} ${t}` })).status).toBe(201);
      const client = await StreamClient.connect(app.url, {
        headers: { authorization: `${scheme} ${t}` },
      });
      client.close();
      await client.closed;
    }
  });
});

describe('access tokens from a JWKS URL', () => {
  let app: TestApp;
  let jwksServer: Server;
  let served: SigningKey[];
  let jwksHits = 0;
  const first = rsaKey('key-1');
  const second = ecKey('key-2');

  beforeAll(async () => {
    served = [first];
    jwksServer = createServer((_req, res) => {
      jwksHits++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: served.map(jwkOf) }));
    });
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    const port = (jwksServer.address() as AddressInfo).port;
    app = await startTestApp({
      env: {
        AUTH_JWT_SECRET: undefined,
        AUTH_JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`,
      },
    });
  });
  afterAll(async () => {
    await app.close();
    await new Promise((r) => jwksServer.close(r));
  });

  it('accepts a token signed by a published key', async () => {
    const res = await call(app.url, 'POST', '/v1/tickets', { token: keyToken(first) });
    expect(res.status).toBe(201);
  });

  it('rejects an HS256 token signed with the public key (algorithm confusion)', async () => {
    const pem = first.publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const now = Math.floor(Date.now() / 1000);
    const forged = jwt.sign(
      { sub: 'mallory', channel: 'branch-app', scope: 'stream:publish admin', exp: now + 600 },
      pem,
      { algorithm: 'HS256', keyid: first.kid },
    );
    expectInvalidToken(
      await call(app.url, 'POST', '/v1/tickets', { token: forged }),
      /not accepted/,
    );
  });

  it('rejects a token signed by a key that is not published', async () => {
    const stranger = rsaKey('key-unknown');
    expectInvalidToken(
      await call(app.url, 'POST', '/v1/tickets', { token: keyToken(stranger) }),
      /unknown/,
    );
  });

  it('picks up a rotated key by its new kid without a restart', async () => {
    const before = jwksHits;
    served = [second, first];
    const res = await call(app.url, 'POST', '/v1/tickets', { token: keyToken(second) });
    expect(res.status).toBe(201);
    expect(jwksHits).toBeGreaterThan(before);
    // The old key, still published, keeps working from the cache.
    expect((await call(app.url, 'POST', '/v1/tickets', { token: keyToken(first) })).status).toBe(
      201,
    );
  });
});

describe('tickets', () => {
  let app: TestApp;
  let tickets: TicketsService;

  beforeAll(async () => {
    // The default TTL (60 s): a ticket must not expire between issue and use on a busy machine.
    app = await startTestApp();
    tickets = app.started.app.get(TicketsService);
  });
  afterAll(() => app.close());

  const issue = async (sub = 'alice') => {
    const res = await call(app.url, 'POST', '/v1/tickets', {
      token: hsToken({ sub, channel: 'kiosk' }),
    });
    expect(res.status).toBe(201);
    expect(Date.parse(String(res.body.expiresAt))).toBeGreaterThan(Date.now());
    return String(res.body.ticket);
  };

  it('works once, bound to the subject and channel of the token', async () => {
    const t = await issue('bob');
    const principal = await tickets.consume(t);
    expect(principal).toMatchObject({
      subject: 'bob',
      channel: 'kiosk',
      scopes: ['stream:publish'],
    });
    await expect(tickets.consume(t)).rejects.toMatchObject({ code: 'invalid_token' });
  });

  it('stores only a hash of the ticket', async () => {
    const t = await issue();
    const rows = await app.db.query('SELECT token_hash FROM tickets');
    expect(rows.rows.map((r: { token_hash: string }) => r.token_hash)).not.toContain(t);
  });

  it('fails once expired', async () => {
    const t = await issue();
    // Its TTL passes: the database's clock decides expiry, so move the tickets' end, not time.
    const expired = await app.db.query(
      `UPDATE tickets SET expires_at = now() - interval '1 millisecond' WHERE consumed_at IS NULL`,
    );
    expect(expired.rowCount).toBeGreaterThanOrEqual(1);
    await expect(tickets.consume(t)).rejects.toMatchObject({ code: 'invalid_token' });
  });

  it('lets exactly one of 20 concurrent uses through', async () => {
    const t = await issue();
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => tickets.consume(t)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(19);
  });

  it('rejects a malformed or unknown ticket', async () => {
    await expect(tickets.consume('short')).rejects.toMatchObject({ code: 'invalid_token' });
    await expect(tickets.consume('x'.repeat(43))).rejects.toMatchObject({ code: 'invalid_token' });
  });
});
