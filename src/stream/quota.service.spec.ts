import { Logger } from '@nestjs/common';
import fc from 'fast-check';
import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { createTestDatabase, dropTestDatabase } from '../../test/support/test-db';
import { ConnectionLeases } from '../cluster/connection-leases.service';
import { Membership } from '../cluster/membership.service';
import { PgThrottlerStorage } from '../cluster/pg-throttler-storage';
import { type AppConfig, loadConfig } from '../config/config';
import { dataSourceOptions } from '../database/data-source-options';
import type { ChannelQuotaEntity } from './channel-quota.entity';
import { type AdmitResult, type ConnectionSlot, ipBucketKey, QuotaService } from './quota.service';

const REFRESH_MS = 1_000;

type Row = Omit<ChannelQuotaEntity, 'updatedAt'>;

/** A stand-in for Repository<ChannelQuotaEntity>: just find(), over rows a test can change. */
class FakeQuotaRows {
  rows: Row[] = [];
  failWith: Error | null = null;
  calls = 0;

  find(): Promise<ChannelQuotaEntity[]> {
    this.calls++;
    if (this.failWith) {
      return Promise.reject(this.failWith);
    }
    return Promise.resolve(this.rows.map((r) => ({ ...r, updatedAt: new Date() })));
  }
}

function override(channel: string, values: Partial<Row>): Row {
  return {
    channel,
    maxConnections: null,
    handshakesPerMin: null,
    maxFps: null,
    maxKbps: null,
    videoCodecs: null,
    maxWidth: null,
    maxHeight: null,
    ...values,
  };
}

interface Setup {
  quotas: QuotaService;
  repo: FakeQuotaRows;
  leases: ConnectionLeases;
}

const started: QuotaService[] = [];

/**
 * The cluster-wide counts live in a real Postgres (a database of its own, migrated), with this
 * process as the one node: leases are valid while its `nodes` row is alive.
 */
let dbUrl: string;
let db: DataSource;
let membership: Membership;

const ENV = {
  NODE_ENV: 'test',
  NODE_ID: 'quota-spec',
  NODE_HEARTBEAT_MS: '1000',
  // Far beyond the run, so the node's leases stay valid even while fake timers hold its heartbeat.
  NODE_DEAD_AFTER_MS: '600000',
};

beforeAll(async () => {
  dbUrl = await createTestDatabase();
  db = new DataSource(dataSourceOptions({ url: dbUrl, poolMax: 8, nodeId: 'quota-spec' }));
  await db.initialize();
  const config = loadConfig(ENV);
  membership = new Membership(
    config,
    { config, databaseUrl: dbUrl, jwtSecret: undefined, devSecret: false },
    db,
  );
  await membership.onApplicationBootstrap();
});

afterAll(async () => {
  await membership?.beforeApplicationShutdown();
  await db?.destroy();
  if (dbUrl) {
    await dropTestDatabase(dbUrl);
  }
});

function configOf(env: Record<string, string>): AppConfig {
  return loadConfig({
    ...ENV,
    QUOTA_NODE_MAX_CONNECTIONS: '100',
    QUOTA_CHANNEL_MAX_CONNECTIONS: '50',
    QUOTA_HANDSHAKES_PER_MIN: '100000',
    QUOTA_IP_HANDSHAKES_PER_MIN: '1000',
    QUOTA_REFRESH_MS: String(REFRESH_MS),
    STREAM_MAX_FPS: '30',
    STREAM_MAX_KBPS: '16000',
    ...env,
  });
}

/** A QuotaService over the shared database, on a clean slate (no leases, no rate counters). */
async function setup(
  env: Record<string, string> = {},
  rows: Row[] = [],
  fresh = true,
): Promise<Setup> {
  if (fresh) {
    await db.query(`DELETE FROM connection_leases`);
    await db.query(`DELETE FROM throttle_counters`);
  }
  const config = configOf(env);
  const repo = new FakeQuotaRows();
  repo.rows = rows;
  const leases = new ConnectionLeases(config, db, membership);
  const quotas = new QuotaService(repo, config, leases, new PgThrottlerStorage(db));
  await quotas.onModuleInit();
  started.push(quotas);
  return { quotas, repo, leases };
}

function admit(quotas: QuotaService, channel: string): Promise<AdmitResult> {
  return quotas.admit({
    id: randomUUID(),
    channel,
    subject: 'spec',
    remoteAddress: '198.51.100.1',
    since: new Date(),
  });
}

async function admitOk(quotas: QuotaService, channel: string): Promise<ConnectionSlot> {
  const result = await admit(quotas, channel);
  if (!result.ok) {
    throw new Error(`expected admission, got ${result.reason}`);
  }
  return result.slot;
}

async function leaseRows(channel?: string): Promise<number> {
  const rows = await db.query<Array<{ n: number }>>(
    `SELECT count(*)::int AS n FROM connection_leases WHERE $1::text IS NULL OR channel = $1`,
    [channel ?? null],
  );
  return rows[0].n;
}

/** Fake clocks for the refresh and per-IP tests; the database's I/O keeps its real callbacks. */
function fakeTimers(): void {
  jest.useFakeTimers({
    now: new Date('2030-01-01T00:00:00Z'),
    doNotFake: ['nextTick', 'setImmediate', 'clearImmediate', 'queueMicrotask'],
  });
}

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}

let warn: jest.SpyInstance;
let log: jest.SpyInstance;

beforeEach(() => {
  warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  log = jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
});

afterEach(() => {
  for (const q of started.splice(0)) {
    q.onModuleDestroy();
  }
  jest.useRealTimers();
  jest.restoreAllMocks();
});

describe('QuotaService limits', () => {
  beforeEach(fakeTimers);

  it('answers the env defaults for a channel without an override, the override otherwise', async () => {
    const { quotas } = await setup({}, [
      override('kiosk', { maxConnections: 3, maxFps: 10 }),
      override('h264-only', { videoCodecs: ['avc'], maxWidth: 1280, maxHeight: 720 }),
    ]);
    const media = { videoCodecs: ['jpeg', 'avc', 'vp8', 'vp9'], maxWidth: 1920, maxHeight: 1080 };
    expect(quotas.limitsFor('web')).toEqual({
      maxConnections: 50,
      handshakesPerMin: 100000,
      maxFps: 30,
      maxKbps: 16000,
      ...media,
    });
    // Null columns keep the default.
    expect(quotas.limitsFor('kiosk')).toEqual({
      maxConnections: 3,
      handshakesPerMin: 100000,
      maxFps: 10,
      maxKbps: 16000,
      ...media,
    });
    expect(quotas.mediaPolicyFor('h264-only')).toEqual({
      videoCodecs: ['avc'],
      maxWidth: 1280,
      maxHeight: 720,
      maxKbps: 16000,
      keyframeIntervalMs: 5000,
    });
  });

  it('applies a changed override at the next refresh, without a restart', async () => {
    const { quotas, repo, leases } = await setup();
    const first = await admitOk(quotas, 'kiosk');
    repo.rows = [override('kiosk', { maxConnections: 1 })];
    await jest.advanceTimersByTimeAsync(REFRESH_MS);
    expect(quotas.limitsFor('kiosk').maxConnections).toBe(1);
    await expect(admit(quotas, 'kiosk')).resolves.toMatchObject({
      ok: false,
      reason: 'channel_full',
    });
    first.release();
    await leases.settled();
    await admitOk(quotas, 'kiosk');
    // A removed override falls back to the default.
    repo.rows = [];
    await jest.advanceTimersByTimeAsync(REFRESH_MS);
    expect(quotas.limitsFor('kiosk').maxConnections).toBe(50);
  });

  it('keeps the last good overrides when a refresh fails, warning once per outage', async () => {
    const { quotas, repo } = await setup({}, [override('kiosk', { maxFps: 5 })]);
    repo.failWith = new Error('connection terminated');
    await jest.advanceTimersByTimeAsync(REFRESH_MS * 5);
    expect(repo.calls).toBeGreaterThanOrEqual(6);
    expect(quotas.limitsFor('kiosk').maxFps).toBe(5);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toContain('connection terminated');

    repo.failWith = null;
    repo.rows = [override('kiosk', { maxFps: 7 })];
    await jest.advanceTimersByTimeAsync(REFRESH_MS);
    expect(quotas.limitsFor('kiosk').maxFps).toBe(7);
    expect(log).toHaveBeenCalledTimes(1);

    repo.failWith = new Error('again');
    await jest.advanceTimersByTimeAsync(REFRESH_MS * 3);
    expect(warn).toHaveBeenCalledTimes(2);
  });

  it('starts on the env defaults when the first load fails, and picks overrides up later', async () => {
    const config = loadConfig({ ...ENV, QUOTA_REFRESH_MS: String(REFRESH_MS) });
    const repo = new FakeQuotaRows();
    repo.failWith = new Error('no database yet');
    const quotas = new QuotaService(
      repo,
      config,
      new ConnectionLeases(config, db, membership),
      new PgThrottlerStorage(db),
    );
    started.push(quotas);
    await quotas.onModuleInit();
    expect(quotas.limitsFor('kiosk').maxConnections).toBe(config.QUOTA_CHANNEL_MAX_CONNECTIONS);
    repo.failWith = null;
    repo.rows = [override('kiosk', { maxConnections: 2 })];
    await jest.advanceTimersByTimeAsync(REFRESH_MS);
    expect(quotas.limitsFor('kiosk').maxConnections).toBe(2);
  });

  it('stops refreshing once destroyed', async () => {
    const { quotas, repo } = await setup();
    quotas.onModuleDestroy();
    const calls = repo.calls;
    await jest.advanceTimersByTimeAsync(REFRESH_MS * 5);
    expect(repo.calls).toBe(calls);
  });
});

describe('QuotaService connection counts', () => {
  it('rejects with node_full (503) when the node is at its total, whatever the channel', async () => {
    const { quotas } = await setup({ QUOTA_NODE_MAX_CONNECTIONS: '3' });
    await admitOk(quotas, 'a');
    await admitOk(quotas, 'b');
    await admitOk(quotas, 'c');
    await expect(admit(quotas, 'd')).resolves.toEqual({
      ok: false,
      reason: 'node_full',
      status: 503,
      retryAfterS: 5,
      message: expect.stringContaining('connection limit'),
    });
    expect(quotas.stats()).toEqual({ node: 3, channels: { a: 1, b: 1, c: 1 } });
  });

  it('rejects with channel_full (429) when the channel is at its limit, other channels go on', async () => {
    const { quotas } = await setup({ QUOTA_CHANNEL_MAX_CONNECTIONS: '2' });
    await admitOk(quotas, 'kiosk');
    await admitOk(quotas, 'kiosk');
    await expect(admit(quotas, 'kiosk')).resolves.toEqual({
      ok: false,
      reason: 'channel_full',
      status: 429,
      retryAfterS: 2,
      message: expect.stringContaining('2 concurrent connections'),
    });
    await admitOk(quotas, 'web');
    expect(quotas.stats()).toEqual({ node: 3, channels: { kiosk: 2, web: 1 } });
  });

  it('reports node_full before channel_full when both apply', async () => {
    const { quotas } = await setup({
      QUOTA_NODE_MAX_CONNECTIONS: '1',
      QUOTA_CHANNEL_MAX_CONNECTIONS: '1',
    });
    await admitOk(quotas, 'kiosk');
    await expect(admit(quotas, 'kiosk')).resolves.toMatchObject({ reason: 'node_full' });
  });

  it('treats max_connections 0 as a switched-off channel with a long Retry-After', async () => {
    const { quotas } = await setup({}, [override('off', { maxConnections: 0 })]);
    await expect(admit(quotas, 'off')).resolves.toMatchObject({
      ok: false,
      reason: 'channel_full',
      status: 429,
      retryAfterS: 60,
    });
  });

  it('frees a slot exactly once, however often release() is called', async () => {
    const { quotas, leases } = await setup({ QUOTA_CHANNEL_MAX_CONNECTIONS: '2' });
    const a = await admitOk(quotas, 'kiosk');
    await admitOk(quotas, 'kiosk');
    // close, error and terminate of one connection, all at once.
    a.release();
    a.release();
    a.release();
    expect(a.released).toBe(true);
    expect(quotas.stats()).toEqual({ node: 1, channels: { kiosk: 1 } });
    await leases.settled();
    expect(await leaseRows('kiosk')).toBe(1);
    await admitOk(quotas, 'kiosk');
    await expect(admit(quotas, 'kiosk')).resolves.toMatchObject({ reason: 'channel_full' });
  });

  it('never admits more than the limits when many handshakes arrive at once', async () => {
    const { quotas } = await setup({
      QUOTA_NODE_MAX_CONNECTIONS: '10',
      QUOTA_CHANNEL_MAX_CONNECTIONS: '4',
    });
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => admit(quotas, ['a', 'b', 'c'][i % 3])),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    const stats = quotas.stats();
    expect(stats.node).toBe(10);
    expect(Object.values(stats.channels).every((n) => n <= 4)).toBe(true);
  });

  it('admits a channel up to its limit across nodes sharing the database, however the handshakes interleave', async () => {
    const env = { QUOTA_CHANNEL_MAX_CONNECTIONS: '5' };
    const nodes = [await setup(env), await setup(env, [], false), await setup(env, [], false)];
    const results = await Promise.all(
      Array.from({ length: 45 }, (_, i) => admit(nodes[i % 3].quotas, 'shared')),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(5);
    expect(results.filter((r) => !r.ok).map((r) => !r.ok && r.reason)).toEqual(
      Array.from({ length: 40 }, () => 'channel_full'),
    );
    expect(await leaseRows('shared')).toBe(5);
    const held = nodes.reduce((sum, n) => sum + n.quotas.stats().node, 0);
    expect(held).toBe(5);
    // A freed slot is free for every node.
    const first = results.find((r) => r.ok);
    first?.slot?.release();
    await Promise.all(nodes.map((n) => n.leases.settled()));
    await expect(admit(nodes[2].quotas, 'shared')).resolves.toMatchObject({ ok: true });
    await expect(admit(nodes[1].quotas, 'shared')).resolves.toMatchObject({
      reason: 'channel_full',
    });
  });

  it('refuses with 503 unavailable while Postgres cannot count, and gives the node slot back', async () => {
    const config = configOf({});
    const down = new DataSource(dataSourceOptions({ url: dbUrl, poolMax: 1, nodeId: 'down' }));
    await down.initialize();
    await down.destroy();
    const quotas = new QuotaService(
      new FakeQuotaRows(),
      config,
      new ConnectionLeases(config, down, membership),
      new PgThrottlerStorage(down),
    );
    await expect(admit(quotas, 'kiosk')).resolves.toEqual({
      ok: false,
      reason: 'unavailable',
      status: 503,
      retryAfterS: 5,
      message: expect.stringContaining('cannot be checked'),
    });
    expect(quotas.stats()).toEqual({ node: 0, channels: {} });
    expect(warn).toHaveBeenCalledTimes(1);
  });

  it('leaves no slot behind after 200 random admit/release cycles', async () => {
    const { quotas, leases } = await setup({
      QUOTA_NODE_MAX_CONNECTIONS: '12',
      QUOTA_CHANNEL_MAX_CONNECTIONS: '5',
    });
    const rnd = prng(7);
    const live: ConnectionSlot[] = [];
    const channels = ['a', 'b', 'c', 'd'];
    let admitted = 0;
    let rejected = 0;
    for (let i = 0; i < 200; i++) {
      if (live.length > 0 && rnd() < 0.35) {
        const [slot] = live.splice(Math.floor(rnd() * live.length), 1);
        // Sometimes the release comes from several paths at once.
        const times = 1 + Math.floor(rnd() * 3);
        for (let t = 0; t < times; t++) {
          slot.release();
        }
      } else {
        const result = await admit(quotas, channels[Math.floor(rnd() * channels.length)]);
        if (result.ok) {
          live.push(result.slot);
          admitted++;
        } else {
          rejected++;
        }
      }
      expect(quotas.stats().node).toBe(live.length);
    }
    // The cycle must have hit the limits too, not only the happy path.
    expect(admitted).toBeGreaterThan(20);
    expect(rejected).toBeGreaterThan(0);
    for (const slot of live) {
      slot.release();
      slot.release();
    }
    expect(quotas.stats()).toEqual({ node: 0, channels: {} });
    await leases.settled();
    expect(await leaseRows()).toBe(0);
  });
});

describe('QuotaService slot release', () => {
  it('gives back exactly the slots taken, under any interleaving of admit bursts and releases by several owners', async () => {
    const channels = ['a', 'b', 'c'];
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({
              op: fc.constant('admit' as const),
              channel: fc.constantFrom(...channels),
              burst: fc.integer({ min: 1, max: 4 }),
            }),
            fc.record({
              op: fc.constant('release' as const),
              pick: fc.nat(),
              // The handshake's abandon, the socket's close and a terminate may all release it.
              owners: fc.integer({ min: 1, max: 3 }),
            }),
          ),
          { maxLength: 60 },
        ),
        async (ops) => {
          const { quotas } = await setup({
            QUOTA_NODE_MAX_CONNECTIONS: '8',
            QUOTA_CHANNEL_MAX_CONNECTIONS: '3',
          });
          const live: ConnectionSlot[] = [];
          for (const op of ops) {
            if (op.op === 'admit') {
              // Handshakes arriving together: their admits interleave at the rate counter's await.
              const results = await Promise.all(
                Array.from({ length: op.burst }, () => admit(quotas, op.channel)),
              );
              for (const result of results) {
                if (result.ok) {
                  live.push(result.slot);
                }
              }
            } else if (live.length > 0) {
              const [slot] = live.splice(op.pick % live.length, 1);
              for (let i = 0; i < op.owners; i++) {
                slot.release();
              }
            }
            const stats = quotas.stats();
            expect(stats.node).toBe(live.length);
            expect(stats.node).toBeLessThanOrEqual(8);
            for (const channel of channels) {
              const held = live.filter((slot) => slot.channel === channel).length;
              expect(stats.channels[channel] ?? 0).toBe(held);
              expect(held).toBeLessThanOrEqual(3);
            }
          }
          for (const slot of live) {
            slot.release();
            slot.release();
          }
          expect(quotas.stats()).toEqual({ node: 0, channels: {} });
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('QuotaService handshake rates', () => {
  beforeEach(fakeTimers);

  it('limits handshakes per IP over a sliding minute, with the window remainder as Retry-After', async () => {
    const { quotas } = await setup({ QUOTA_IP_HANDSHAKES_PER_MIN: '3' });
    for (let i = 0; i < 3; i++) {
      await expect(quotas.checkIpHandshake('198.51.100.7')).resolves.toEqual({ ok: true });
      jest.advanceTimersByTime(10_000);
    }
    // Hits at 0, 10 and 20 s; now 30 s: the first leaves the window in 30 s.
    await expect(quotas.checkIpHandshake('198.51.100.7')).resolves.toEqual({
      ok: false,
      reason: 'ip_rate',
      status: 429,
      retryAfterS: 30,
      message: expect.stringContaining('3 per minute'),
    });
    // Another address has its own counter.
    await expect(quotas.checkIpHandshake('198.51.100.8')).resolves.toEqual({ ok: true });
    // Hammering while limited does not extend the window.
    for (let i = 0; i < 20; i++) {
      await quotas.checkIpHandshake('198.51.100.7');
    }
    jest.advanceTimersByTime(29_000);
    await expect(quotas.checkIpHandshake('198.51.100.7')).resolves.toMatchObject({
      ok: false,
      retryAfterS: 1,
    });
    jest.advanceTimersByTime(1_000);
    await expect(quotas.checkIpHandshake('198.51.100.7')).resolves.toEqual({ ok: true });
  });

  it('counts IPv6 clients per /64 and IPv4-mapped addresses as IPv4', async () => {
    const { quotas } = await setup({ QUOTA_IP_HANDSHAKES_PER_MIN: '2' });
    await expect(quotas.checkIpHandshake('2001:db8:1:2::1')).resolves.toEqual({ ok: true });
    await expect(quotas.checkIpHandshake('2001:db8:1:2:ffff::9')).resolves.toEqual({ ok: true });
    await expect(quotas.checkIpHandshake('2001:db8:1:2::42')).resolves.toMatchObject({
      ok: false,
      reason: 'ip_rate',
    });
    await expect(quotas.checkIpHandshake('2001:db8:1:3::1')).resolves.toEqual({ ok: true });

    await quotas.checkIpHandshake('::ffff:203.0.113.5');
    await quotas.checkIpHandshake('203.0.113.5');
    await expect(quotas.checkIpHandshake('203.0.113.5')).resolves.toMatchObject({ ok: false });
  });

  it('limits handshakes per channel across the nodes, with its override', async () => {
    const rows = [override('kiosk', { handshakesPerMin: 2 })];
    const a = await setup({}, rows);
    const b = await setup({}, rows, false);
    (await admitOk(a.quotas, 'kiosk')).release();
    (await admitOk(b.quotas, 'kiosk')).release();
    const limited = await admit(a.quotas, 'kiosk');
    expect(limited).toEqual({
      ok: false,
      reason: 'channel_rate',
      status: 429,
      retryAfterS: expect.any(Number),
      message: expect.stringContaining('2 per minute'),
    });
    // Until the shared window ends: at most a minute.
    expect(!limited.ok && limited.retryAfterS).toBeGreaterThanOrEqual(1);
    expect(!limited.ok && limited.retryAfterS).toBeLessThanOrEqual(60);
    await expect(admit(b.quotas, 'kiosk')).resolves.toMatchObject({ reason: 'channel_rate' });
    // The default rate of other channels is untouched.
    (await admitOk(b.quotas, 'web')).release();
    await Promise.all([a.leases.settled(), b.leases.settled()]);
    expect(await leaseRows()).toBe(0);
  });

  it('counts attempts a full channel rejects against the channel rate, and reports the longer wait', async () => {
    const { quotas, leases } = await setup({}, [
      override('kiosk', { handshakesPerMin: 3, maxConnections: 1 }),
    ]);
    const held = await admitOk(quotas, 'kiosk');
    await expect(admit(quotas, 'kiosk')).resolves.toMatchObject({
      reason: 'channel_full',
      retryAfterS: 2,
    });
    await expect(admit(quotas, 'kiosk')).resolves.toMatchObject({ reason: 'channel_full' });
    // Three attempts counted: the rate is exhausted too, so waiting 2 s would not be enough.
    const both = await admit(quotas, 'kiosk');
    expect(both).toMatchObject({ reason: 'channel_full' });
    expect(!both.ok && both.retryAfterS).toBeGreaterThan(2);
    held.release();
    await leases.settled();
    await expect(admit(quotas, 'kiosk')).resolves.toMatchObject({ reason: 'channel_rate' });
    expect(quotas.stats()).toEqual({ node: 0, channels: {} });
  });
});

describe('ipBucketKey', () => {
  it.each([
    ['203.0.113.5', '203.0.113.5'],
    ['::ffff:203.0.113.5', '203.0.113.5'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:0db8:0001:0002:0003:0004:0005:0006', '2001:db8:1:2::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['unknown', 'unknown'],
  ])('%s counts as %s', (ip, key) => {
    expect(ipBucketKey(ip)).toBe(key);
  });
});
