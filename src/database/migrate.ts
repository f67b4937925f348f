import { DataSource } from 'typeorm';
import { dataSourceOptions, type DatabaseSettings } from './data-source-options';

/** Arbitrary but fixed: every framegate node takes this advisory lock to migrate. */
const MIGRATION_LOCK_KEY = 0x6672_6d67;

/**
 * Runs pending migrations under a session-level Postgres advisory lock, so several nodes starting
 * at once migrate one after the other and the later ones find nothing to do.
 */
export async function runMigrations(settings: DatabaseSettings): Promise<string[]> {
  const ds = new DataSource({ ...dataSourceOptions(settings), extra: { max: 2 } });
  await ds.initialize();
  const runner = ds.createQueryRunner();
  try {
    await runner.connect();
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      const applied = await ds.runMigrations({ transaction: 'each' });
      return applied.map((m) => m.name);
    } finally {
      await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  } finally {
    await runner.release();
    await ds.destroy();
  }
}
