import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../migrations';
import { dataSourceOptions } from '../src/database/data-source-options';
import { runMigrations } from '../src/database/migrate';
import { createTestDatabase, dropTestDatabase } from './support/test-db';

describe('schema', () => {
  let url: string;
  let ds: DataSource;

  beforeAll(async () => {
    url = await createTestDatabase();
    ds = new DataSource(dataSourceOptions({ url, poolMax: 2, nodeId: 'schema-test' }));
    await ds.initialize();
  });
  afterAll(async () => {
    await ds.destroy();
    await dropTestDatabase(url);
  });

  it('matches the entities exactly after the migrations (no drift to generate)', async () => {
    const pending = await ds.driver.createSchemaBuilder().log();
    expect(pending.upQueries.map((q) => q.query)).toEqual([]);
  });

  it('reverts every migration with its down() and applies them again', async () => {
    while ((await ds.query(`SELECT count(*)::int AS n FROM typeorm_migrations`))[0].n > 0) {
      await ds.undoLastMigration({ transaction: 'each' });
    }
    const tables = await ds.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'typeorm_migrations'`,
    );
    expect(tables).toEqual([]);
    await runMigrations({ url, poolMax: 2, nodeId: 'schema-test' });
    expect((await ds.driver.createSchemaBuilder().log()).upQueries).toEqual([]);
  });

  it('lets several nodes migrate at once under the advisory lock', async () => {
    const fresh = await createTestDatabase();
    try {
      const admin = new DataSource(dataSourceOptions({ url: fresh, poolMax: 2, nodeId: 'x' }));
      await admin.initialize();
      await admin.undoLastMigration({ transaction: 'each' });
      await admin.destroy();
      const results = await Promise.all(
        [1, 2, 3].map((n) => runMigrations({ url: fresh, poolMax: 2, nodeId: `node-${n}` })),
      );
      // Each undone migration is applied once, by one node.
      expect(results.flat()).toEqual([MIGRATIONS[MIGRATIONS.length - 1]?.name]);
    } finally {
      await dropTestDatabase(fresh);
    }
  });
});
