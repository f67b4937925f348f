import { DataSource } from 'typeorm';
import { createTestDatabase, dropTestDatabase } from '../../test/support/test-db';
import { loadConfig } from '../config/config';
import { dataSourceOptions } from '../database/data-source-options';
import { Membership } from './membership.service';

/**
 * The node's lease on a real Postgres: renewals must not wait behind the application's queries,
 * or a busy node fences every session it holds (bench:soak, 2026-12-03).
 */
describe('Membership', () => {
  let dbUrl: string;
  let db: DataSource;

  beforeAll(async () => {
    dbUrl = await createTestDatabase();
    db = new DataSource(dataSourceOptions({ url: dbUrl, poolMax: 2, nodeId: 'membership-spec' }));
    await db.initialize();
  });

  afterAll(async () => {
    await db?.destroy();
    if (dbUrl) {
      await dropTestDatabase(dbUrl);
    }
  });

  function membershipOf(nodeId: string): Membership {
    const config = loadConfig({
      NODE_ENV: 'test',
      NODE_ID: nodeId,
      NODE_HEARTBEAT_MS: '100',
      NODE_DEAD_AFTER_MS: '1000',
    });
    return new Membership(
      config,
      { config, databaseUrl: dbUrl, jwtSecret: undefined, devSecret: false },
      db,
    );
  }

  async function heartbeatOf(nodeId: string): Promise<number> {
    const [row] = await db.query<Array<{ heartbeat_at: Date }>>(
      `SELECT heartbeat_at FROM nodes WHERE id = $1`,
      [nodeId],
    );
    return row.heartbeat_at.getTime();
  }

  it('renews its lease while every pooled connection is busy for longer than the lease', async () => {
    const membership = membershipOf('busy-node');
    const lapses: number[] = [];
    membership.onLapse(() => lapses.push(Date.now()));
    await membership.onApplicationBootstrap();
    try {
      const before = await heartbeatOf('busy-node');
      // Both pooled connections, and a queue behind them, busy for 2.5 s: 2.5 leases.
      const blockers = Array.from({ length: 4 }, () => db.query(`SELECT pg_sleep(1.25)`));
      await new Promise((r) => setTimeout(r, 2_000));
      expect(membership.healthy).toBe(true);
      await Promise.all(blockers);
      expect(await heartbeatOf('busy-node')).toBeGreaterThan(before + 1_500);
      expect(lapses).toEqual([]);
    } finally {
      await membership.beforeApplicationShutdown();
    }
  });

  it('renews again on a new connection after its own was killed, and marks itself stopped', async () => {
    const membership = membershipOf('cut-node');
    await membership.onApplicationBootstrap();
    try {
      await db.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'framegate:cut-node:lease'`,
      );
      const cutAt = await heartbeatOf('cut-node');
      let renewed = cutAt;
      for (let i = 0; i < 50 && renewed <= cutAt; i++) {
        await new Promise((r) => setTimeout(r, 50));
        renewed = await heartbeatOf('cut-node');
      }
      expect(renewed).toBeGreaterThan(cutAt);
      expect(membership.healthy).toBe(true);
    } finally {
      await membership.beforeApplicationShutdown();
    }
    const [row] = await db.query<Array<{ stopped_at: Date | null }>>(
      `SELECT stopped_at FROM nodes WHERE id = 'cut-node'`,
    );
    expect(row.stopped_at).not.toBeNull();
  });
});
