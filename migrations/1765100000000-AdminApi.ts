import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The admin API: who closed a connection (`closed_by`, the admin's subject of a kick), a log of
 * admin actions (kicks, quota changes), and the indexes its lists page through. Session lookups by
 * business parameter use ix_sessions_params (GIN, jsonb_path_ops) from the initial schema.
 */
export class AdminApi1765100000000 implements MigrationInterface {
  name = 'AdminApi1765100000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE connection_audits ADD COLUMN closed_by text NULL`);
    await q.query(`
      CREATE TABLE admin_actions (
        id uuid PRIMARY KEY,
        at timestamptz NOT NULL,
        node text NOT NULL,
        subject text NOT NULL,
        action text NOT NULL,
        target text NOT NULL,
        detail jsonb NOT NULL DEFAULT '{}'
      )`);
    await q.query(`CREATE INDEX ix_admin_actions_at ON admin_actions (at)`);
    // Keyset pages of sessions: newest first, ties broken by id (audits page on ix_connection_audits_at).
    await q.query(`CREATE INDEX ix_sessions_created_id ON sessions (created_at DESC, id DESC)`);
    await q.query(
      `CREATE INDEX ix_connection_audits_remote_at ON connection_audits (remote_address, at)`,
    );
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX ix_connection_audits_remote_at`);
    await q.query(`DROP INDEX ix_sessions_created_id`);
    await q.query(`DROP TABLE admin_actions`);
    await q.query(`ALTER TABLE connection_audits DROP COLUMN closed_by`);
  }
}
