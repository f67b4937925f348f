import { testDir } from './dirs';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { runMigrations } from '../../src/database/migrate';
import { PgProcess } from './pg-process';
import { ensureServiceBuilt } from './service-process';
import { TEMPLATE_DB } from './test-db';

/**
 * The service's build, then one real Postgres for the whole run (embedded, or TEST_DATABASE_URL),
 * with a template database migrated once; each test app gets its own database cloned from the
 * template.
 */
export default async function globalSetup(): Promise<void> {
  ensureServiceBuilt();
  let adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) {
    const dir = testDir('test-pg');
    const pg = new PgProcess(join(dir, 'postgres'), 0);
    adminUrl = await pg.start();
    (globalThis as Record<string, unknown>).__FRAMEGATE_PG__ = { pg, dir };
  }
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DB} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${TEMPLATE_DB}`);
  } finally {
    await admin.end();
  }
  const templateUrl = new URL(adminUrl);
  templateUrl.pathname = `/${TEMPLATE_DB}`;
  await runMigrations({ url: templateUrl.toString(), poolMax: 2, nodeId: 'test-setup' });
  process.env.FRAMEGATE_TEST_PG_URL = adminUrl;
}

export function cleanupDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
