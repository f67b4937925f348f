import { DrainService } from '../src/stream/drain.service';
import { QuotaService } from '../src/stream/quota.service';
import { startTestApp, type TestApp } from './support/app';
import { rejectedHandshake, StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

describe('connection quotas', () => {
  let app: TestApp;
  let quotas: QuotaService;

  beforeAll(async () => {
    app = await startTestApp({
      env: { QUOTA_REFRESH_MS: '100', QUOTA_IP_HANDSHAKES_PER_MIN: '100000' },
    });
    quotas = app.started.app.get(QuotaService);
  });
  afterAll(() => app.close());

  async function override(channel: string, columns: Record<string, number>) {
    const names = Object.keys(columns);
    await app.db.query(
      `INSERT INTO channel_quotas (channel, ${names.join(', ')}) VALUES ($1, ${names.map((_, i) => `$${i + 2}`).join(', ')})
       ON CONFLICT (channel) DO UPDATE SET ${names.map((n) => `${n} = EXCLUDED.${n}`).join(', ')}`,
      [channel, ...Object.values(columns)],
    );
    // Applied by the periodic refresh, without a restart.
    await waitFor(() => {
      const limits = quotas.limitsFor(channel);
      return names.every((n) =>
        n === 'max_connections'
          ? limits.maxConnections === columns[n]
          : n === 'handshakes_per_min'
            ? limits.handshakesPerMin === columns[n]
            : true,
      );
    });
  }

  it('refuses the 4th connection of a channel limited to 3 with 429, and admits it after one closes', async () => {
    await override('counter-3', { max_connections: 3 });
    const token = hsToken({ channel: 'counter-3' });
    const clients = await Promise.all(
      [1, 2, 3].map(() => StreamClient.connect(app.url, { token })),
    );
    const refused = await rejectedHandshake(app.url, { token });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.body).toMatchObject({ error: 'quota_exceeded' });
    // Another channel is not affected.
    (await StreamClient.connect(app.url, { token: hsToken({ channel: 'other' }) })).close();

    clients[0]?.close();
    await clients[0]?.closed;
    await waitFor(() => (quotas.stats().channels['counter-3'] ?? 0) === 2);
    const fourth = await StreamClient.connect(app.url, { token });
    expect(fourth.ws.readyState).toBe(fourth.ws.OPEN);
    [fourth, ...clients].forEach((c) => c?.close());
    await waitFor(async () => {
      const r = await app.db.query(
        `SELECT count(*)::int AS n FROM connection_audits WHERE outcome = 'rejected_quota'`,
      );
      return r.rows[0].n >= 1;
    });
  });

  it('refuses handshakes over the channel rate with 429 and Retry-After', async () => {
    await override('chatty', { handshakes_per_min: 3 });
    const token = hsToken({ channel: 'chatty' });
    for (let i = 0; i < 3; i++) {
      (await StreamClient.connect(app.url, { token })).close();
    }
    const refused = await rejectedHandshake(app.url, { token });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(1);
  });

  it('leaks no slot after 200 random connect/kill cycles', async () => {
    await override('churn', { max_connections: 8, handshakes_per_min: 100_000 });
    const token = hsToken({ channel: 'churn' });
    let seed = 42;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const cycle = async (): Promise<void> => {
      let client: StreamClient;
      try {
        client = await StreamClient.connect(app.url, { token });
      } catch {
        return; // refused at the limit: also a cycle
      }
      const r = random();
      if (r < 0.3) {
        client.ws.terminate();
      } else if (r < 0.5) {
        client.close();
      } else {
        const o = await client.open().catch(() => null);
        const how = random();
        if (o && how < 0.4) {
          client.sendFrame(1, 0, Buffer.alloc(64));
          client.ws.terminate();
        } else if (o && how < 0.7) {
          client.send({ type: 'close' });
          await client.closed;
        } else {
          client.ws.terminate();
        }
      }
      await client.closed;
    };
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 10 }, cycle));
    }
    await waitFor(() => quotas.stats().node === 0, 30_000, 'all slots released');
    expect(quotas.stats()).toEqual({ node: 0, channels: {} });
  });
});

describe('node limits and draining', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp({
      env: { QUOTA_NODE_MAX_CONNECTIONS: '2', QUOTA_IP_HANDSHAKES_PER_MIN: '8' },
    });
  });
  afterAll(() => app.close());

  it('answers 503 with Retry-After at the node limit', async () => {
    const token = hsToken();
    const a = await StreamClient.connect(app.url, { token });
    const b = await StreamClient.connect(app.url, { token: hsToken({ channel: 'kiosk' }) });
    const refused = await rejectedHandshake(app.url, { token: hsToken({ channel: 'third' }) });
    expect(refused.status).toBe(503);
    expect(refused.body.error).toBe('node_full');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    a.close();
    b.close();
    await Promise.all([a.closed, b.closed]);
  });

  it('answers 429 when one IP handshakes too often, before checking credentials', async () => {
    let refused = null;
    for (let i = 0; i < 12 && !refused; i++) {
      const res = await rejectedHandshake(app.url, { token: 'not-even-a-token' });
      if (res.status === 429) {
        refused = res;
      }
    }
    expect(refused?.body.error).toBe('quota_exceeded');
  });

  it('answers 503 rejected_draining once the node drains', async () => {
    await app.started.app.get(DrainService).drain();
    const refused = await rejectedHandshake(app.url, { token: hsToken() });
    expect(refused.status).toBe(503);
    expect(refused.body.error).toBe('draining');
    await waitFor(async () => {
      const r = await app.db.query(
        `SELECT count(*)::int AS n FROM connection_audits WHERE outcome = 'rejected_draining'`,
      );
      return r.rows[0].n === 1;
    });
  });
});
