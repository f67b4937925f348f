import { DataSource } from 'typeorm';
import { ClusterBus } from '../src/cluster/cluster-bus.service';
import { Membership } from '../src/cluster/membership.service';
import { type AppConfig, loadConfig } from '../src/config/config';
import { dataSourceOptions } from '../src/database/data-source-options';
import { testDir } from './support/dirs';
import { createTestDatabase, dropTestDatabase } from './support/test-db';

/** Membership and the request bus of two or three nodes, in this process, on a real Postgres. */
describe('cluster membership and bus on real Postgres', () => {
  let url: string;
  let db: DataSource;
  const started: Array<{ stop(): Promise<void> }> = [];

  beforeAll(async () => {
    url = await createTestDatabase();
    db = await new DataSource(
      dataSourceOptions({ url, poolMax: 6, nodeId: 'bus-test' }),
    ).initialize();
  });
  afterEach(async () => {
    for (const s of started.splice(0).reverse()) {
      await s.stop();
    }
  });
  afterAll(async () => {
    await db.destroy();
    await dropTestDatabase(url);
  });

  function configOf(nodeId: string): AppConfig {
    return loadConfig({
      NODE_ID: nodeId,
      DATA_DIR: testDir('bus'),
      NODE_HEARTBEAT_MS: '100',
      NODE_DEAD_AFTER_MS: '600',
      CLUSTER_REQUEST_TIMEOUT_MS: '700',
    });
  }

  async function node(nodeId: string): Promise<{ bus: ClusterBus; membership: Membership }> {
    const config = configOf(nodeId);
    const runtime = { config, databaseUrl: url, jwtSecret: undefined, devSecret: false };
    const bus = new ClusterBus(config, runtime, db);
    const membership = new Membership(config, runtime, db);
    await membership.onApplicationBootstrap();
    await bus.onApplicationBootstrap();
    started.push({
      stop: async () => {
        await bus.onModuleDestroy();
        await membership.beforeApplicationShutdown();
      },
    });
    return { bus, membership };
  }

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('routes a request to the named node and brings its answer back', async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    const seen: Array<{ body: unknown; from: string }> = [];
    b.bus.on('echo', (body, from) => {
      seen.push({ body, from });
      return { node: 'node-b', got: body.n };
    });
    a.bus.on('echo', () => ({ node: 'node-a' }));

    expect(await a.bus.request('node-b', 'echo', { n: 7 })).toEqual({
      delivered: true,
      reply: { node: 'node-b', got: 7 },
    });
    expect(seen).toEqual([{ body: { n: 7 }, from: 'node-a' }]);
    // To itself: the handler runs directly.
    expect(await a.bus.request('node-a', 'echo', {})).toEqual({
      delivered: true,
      reply: { node: 'node-a' },
    });
  });

  it("reports a handler's error, an unknown kind and a silent addressee as undelivered", async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    b.bus.on('boom', () => {
      throw new Error('no such connection');
    });

    expect(await a.bus.request('node-b', 'boom', {})).toEqual({
      delivered: false,
      reason: 'failed',
      message: 'no such connection',
    });
    expect(await a.bus.request('node-b', 'nothing', {})).toMatchObject({
      delivered: false,
      reason: 'failed',
    });
    expect(await a.bus.request('node-gone', 'boom', {}, 300)).toEqual({
      delivered: false,
      reason: 'timeout',
    });
    expect(await a.bus.request('node-b', 'boom', { big: 'x'.repeat(10_000) })).toMatchObject({
      delivered: false,
      reason: 'failed',
      message: expect.stringMatching(/too large/),
    });
  });

  it('listens again after its connection is killed', async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    b.bus.on('ping', () => 'pong');
    await db.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'framegate:node-b:bus'`,
    );
    let answer = await a.bus.request('node-b', 'ping', {}, 300);
    for (let i = 0; i < 50 && !answer.delivered; i++) {
      await sleep(100);
      answer = await a.bus.request('node-b', 'ping', {}, 300);
    }
    expect(answer).toEqual({ delivered: true, reply: 'pong' });
  });

  it('counts a node alive while it renews, dead once stopped or silent', async () => {
    const a = await node('node-a');
    const b = await node('node-b');
    await sleep(300);
    expect(a.membership.healthy).toBe(true);
    expect(await a.membership.isAlive('node-b')).toBe(true);
    const view = (await a.membership.nodes()).find((n) => n.id === 'node-b');
    expect(view).toMatchObject({ id: 'node-b', alive: true, stoppedAt: null, pid: process.pid });

    // A stopped node is dead at once.
    await b.membership.beforeApplicationShutdown();
    expect(await a.membership.isAlive('node-b')).toBe(false);

    // A node whose renewals stop getting through (its row locked: the UPDATE waits) lapses: the
    // others count it dead, it counts itself unhealthy and tells its listeners once.
    const c = await node('node-c');
    let lapses = 0;
    c.membership.onLapse(() => lapses++);
    const runner = db.createQueryRunner();
    await runner.startTransaction();
    try {
      await runner.query(`SELECT 1 FROM nodes WHERE id = 'node-c' FOR UPDATE`);
      for (let i = 0; i < 50 && c.membership.healthy; i++) {
        await sleep(100);
      }
      expect(c.membership.healthy).toBe(false);
      // The others follow within the renewal's transit: a node times its lease from before it
      // sent the renewal, Postgres stamps it on arrival, so a node counts itself dead first
      // (by a few ms, more on a busy machine), never after the others take its work over.
      let aliveToA = await a.membership.isAlive('node-c');
      for (let i = 0; i < 50 && aliveToA; i++) {
        await sleep(20);
        aliveToA = await a.membership.isAlive('node-c');
      }
      expect(aliveToA).toBe(false);
      await sleep(300);
      expect(lapses).toBe(1);
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }
    for (let i = 0; i < 50 && !c.membership.healthy; i++) {
      await sleep(100);
    }
    expect(c.membership.healthy).toBe(true);
    expect(await a.membership.isAlive('node-c')).toBe(true);
  });
});
