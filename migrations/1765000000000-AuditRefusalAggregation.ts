import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Repeated refusals share a connection_audits row per address, reason and window: `count` of them
 * from `at` to `last_at`. Existing rows stand for one connection each, hence the default.
 */
export class AuditRefusalAggregation1765000000000 implements MigrationInterface {
  name = 'AuditRefusalAggregation1765000000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE connection_audits
        ADD COLUMN count integer NOT NULL DEFAULT 1,
        ADD COLUMN last_at timestamptz NULL,
        ADD CONSTRAINT ck_connection_audits_count CHECK (count >= 1)`);
  }

  /** Aggregated rows keep their first refusal only: the counts have nowhere to go. */
  public async down(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE connection_audits
        DROP CONSTRAINT ck_connection_audits_count,
        DROP COLUMN last_at,
        DROP COLUMN count`);
  }
}
