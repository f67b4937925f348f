import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { startTestApp, type TestApp } from './support/app';
import {
  Canary,
  type CanaryPhase,
  expectAcksTimely,
  expectRecordingComplete,
  expectResourcesBack,
  type Resources,
  resources,
} from './support/canary';
import { nodeState } from './support/node-state';
import { payloadFor, StreamClient } from './support/stream-client';
import { hsToken, jwkOf, keyToken, rsaKey } from './support/tokens';
import { waitFor } from './support/wait';

/** Upgrades `ws` refuses, each with a valid token: none may cost a slot. */
const MALFORMED = {
  badKey: 400,
  badVersion: 426,
  wrongUpgrade: 400,
  badProtocol: 400,
  badMethod: 405,
} as const;
type Malformed = keyof typeof MALFORMED;
type Attempt = Malformed | 'missingUpgrade' | 'earlyClose' | 'good' | 'goodSession';

/**
 * The canary's acks stayed timely, its recording is complete, its own slot comes back when it
 * ends, and RSS and fds return to the baseline.
 */
async function canaryUnharmed(
  app: TestApp,
  canary: Canary,
  alone: CanaryPhase,
  beside: CanaryPhase,
  baseline: Resources,
): Promise<void> {
  expectAcksTimely(alone, beside);
  const { closedFrames } = await canary.stop();
  expect(closedFrames).toBe(canary.sent);
  await expectRecordingComplete(app.db, canary.sessionId, canary.sent);
  await waitFor(
    async () => (await nodeState(app)).quota.node === 0,
    15_000,
    'canary slot given back',
  );
  await expectResourcesBack(baseline, 0.1);
}

/**
 * Issue 10 item 2: upgrades that ws refuses, or whose client goes away during the checks, give
 * back their quota slots and close their audit rows.
 */
describe('abuse: upgrades that never become connections', () => {
  let app: TestApp;
  let host: string;
  let port: number;
  const token = hsToken({ sub: 'mallory', channel: 'upgrades' });

  beforeAll(async () => {
    app = await startTestApp({
      env: {
        ACK_INTERVAL_MS: '500',
        RESUME_WINDOW_MS: '1000',
        QUOTA_IP_HANDSHAKES_PER_MIN: '100000',
        QUOTA_HANDSHAKES_PER_MIN: '100000',
      },
    });
    const url = new URL(app.url);
    host = url.host;
    port = Number(url.port);
  });
  afterAll(async () => {
    await app.close();
  });

  function request(kind: Malformed | 'missingUpgrade' | 'earlyClose'): string {
    let method = 'GET';
    const headers: Record<string, string> = {
      Host: host,
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Protocol': 'framegate.v1',
      Authorization: `Bearer ${token}`,
    };
    switch (kind) {
      case 'badKey':
        headers['Sec-WebSocket-Key'] = 'not-a-nonce';
        break;
      case 'badVersion':
        headers['Sec-WebSocket-Version'] = '12';
        break;
      case 'wrongUpgrade':
        headers.Upgrade = 'h2c';
        break;
      case 'badProtocol':
        headers['Sec-WebSocket-Protocol'] = 'framegate.v1, framegate.v1';
        break;
      case 'badMethod':
        method = 'POST';
        break;
      case 'missingUpgrade':
        delete headers.Upgrade;
        headers.Connection = 'close';
        break;
      case 'earlyClose':
        break;
    }
    const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
    return `${method} /v1/stream HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
  }

  /** Sends a raw upgrade; resolves with the status the server answered once it closed the socket. */
  function raw(kind: Malformed | 'missingUpgrade'): Promise<number> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('error', reject);
      // The server, not this client, ends the exchange: 'close' proves it closed the socket.
      socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
      socket.write(request(kind));
    });
  }

  /** A good upgrade whose client goes away while the server checks its credentials. */
  function earlyClose(): Promise<void> {
    return new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(request('earlyClose'), () => socket.destroy());
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
    });
  }

  async function attempt(kind: Attempt): Promise<void> {
    switch (kind) {
      case 'good': {
        const client = await StreamClient.connect(app.url, { token });
        client.close();
        await client.closed;
        return;
      }
      case 'goodSession': {
        const client = await StreamClient.connect(app.url, { token });
        await client.open();
        client.sendFrame(1, 0, payloadFor(1));
        client.send({ type: 'close' });
        await client.next('closed');
        await client.closed;
        return;
      }
      case 'earlyClose':
        return earlyClose();
      case 'missingUpgrade': {
        // Not an upgrade at all for HTTP: an ordinary request that gets an ordinary refusal.
        const status = await raw(kind);
        expect(status).toBeGreaterThanOrEqual(400);
        expect(status).toBeLessThan(500);
        return;
      }
      case 'badKey':
      case 'badVersion':
      case 'wrongUpgrade':
      case 'badProtocol':
      case 'badMethod':
        expect(await raw(kind)).toBe(MALFORMED[kind]);
        return;
    }
  }

  async function openAcceptedRows(): Promise<number> {
    const r = await app.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM connection_audits
       WHERE outcome = 'accepted' AND closed_at IS NULL AND subject = 'mallory'`,
    );
    return Number(r.rows[0].n);
  }

  it('gives every slot back and closes every accepted audit row, whatever the mix; the canary unharmed', async () => {
    const canary = await Canary.start(app.url);
    await waitFor(() => canary.sent >= 30, 30_000, 'canary warm');
    canary.mark();
    const baseline = resources();
    await waitFor(() => canary.sent >= 60, 30_000, 'canary alone');
    const alone = canary.mark();

    const kinds: Attempt[] = [
      ...(Object.keys(MALFORMED) as Malformed[]),
      'missingUpgrade',
      'earlyClose',
      'good',
      'goodSession',
    ];
    let malformedSent = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom(...kinds), { minLength: 1, maxLength: 8 }),
        async (mix) => {
          malformedSent += mix.filter((k) => k in MALFORMED).length;
          await Promise.all(mix.map((kind) => attempt(kind)));
          // Only the canary's slot stays taken; every accepted connection's row gets its close.
          await waitFor(
            async () => {
              const state = await nodeState(app);
              return state.quota.node === 1 && state.slotsMetric === 1;
            },
            10_000,
            'slots given back',
          );
          expect((await nodeState(app)).quota).toEqual({ node: 1, channels: { canary: 1 } });
          await waitFor(async () => (await openAcceptedRows()) === 0, 10_000, 'audit rows closed');
        },
      ),
      { numRuns: 20 },
    );
    const beside = canary.mark();

    // Every refusal of a malformed upgrade is audited (aggregated rows count them all).
    await waitFor(
      async () => {
        const r = await app.db.query<{ n: string | null }>(
          `SELECT sum(count) AS n FROM connection_audits WHERE outcome = 'rejected_protocol'`,
        );
        return Number(r.rows[0].n ?? 0) === malformedSent;
      },
      15_000,
      'refusals audited',
    );

    await canaryUnharmed(app, canary, alone, beside, baseline);
  }, 180_000);
});

/**
 * The same, made deterministic: the token's key is not cached yet, so the check waits for the
 * JWKS, which this test holds until the client has gone away.
 */
describe('abuse: a client that leaves while its credentials are checked', () => {
  let app: TestApp;
  let jwks: Server;
  const known = rsaKey('known');
  const late = rsaKey('late');
  const served = [known];
  let held: ServerResponse | null = null;
  let hold = false;

  beforeAll(async () => {
    jwks = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      if (hold) {
        held = res;
        return;
      }
      res.end(JSON.stringify({ keys: served.map(jwkOf) }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const jwksPort = (jwks.address() as AddressInfo).port;
    app = await startTestApp({
      env: {
        ACK_INTERVAL_MS: '500',
        AUTH_JWT_SECRET: undefined,
        AUTH_JWKS_URL: `http://127.0.0.1:${jwksPort}/.well-known/jwks.json`,
      },
    });
  });
  afterAll(async () => {
    await app.close();
    await new Promise((r) => jwks.close(r));
  });

  it('gives its slot back and closes its accepted audit row; the canary unharmed', async () => {
    const canary = await Canary.start(app.url, {
      token: keyToken(known, { sub: 'canary', channel: 'canary' }),
    });
    await waitFor(() => canary.sent >= 30, 30_000, 'canary warm');
    canary.mark();
    const baseline = resources();
    await waitFor(() => canary.sent >= 60, 30_000, 'canary alone');
    const alone = canary.mark();

    hold = true;
    const token = keyToken(late, { sub: 'leaver', channel: 'leavers' });
    const socket = connect(Number(new URL(app.url).port), '127.0.0.1');
    socket.on('error', () => undefined);
    const gone = new Promise((r) => socket.on('close', r));
    socket.write(
      [
        'GET /v1/stream HTTP/1.1',
        `Host: ${new URL(app.url).host}`,
        'Connection: Upgrade',
        'Upgrade: websocket',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Protocol: framegate.v1',
        `Authorization: Bearer ${token}`,
        '',
        '',
      ].join('\r\n'),
    );
    // The node asks the JWKS for the unknown key: the check is now under way. The client leaves.
    await waitFor(() => held !== null, 10_000, 'JWKS asked for the new key');
    socket.destroy();
    await gone;
    served.push(late);
    hold = false;
    held!.end(JSON.stringify({ keys: served.map(jwkOf) }));

    await waitFor(
      async () => {
        const r = await app.db.query<{ closed_at: Date | null }>(
          `SELECT closed_at FROM connection_audits WHERE outcome = 'accepted' AND subject = 'leaver'`,
        );
        return r.rows.length === 1 && r.rows[0].closed_at !== null;
      },
      15_000,
      'accepted row closed',
    );
    const state = await nodeState(app);
    expect(state.quota).toEqual({ node: 1, channels: { canary: 1 } });
    expect(state.connectionsMetric).toBe(1);
    const beside = canary.mark();

    await canaryUnharmed(app, canary, alone, beside, baseline);
  }, 120_000);
});
