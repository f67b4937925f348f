import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Node membership (issue 15): every running node keeps a row here with a heartbeat. A node whose
 * heartbeat is older than NODE_DEAD_AFTER_MS, or that stopped, is dead to the others. `instance`
 * is the running process (a restart under the same NODE_ID takes the row over).
 */
export class ClusterNodes1765710000000 implements MigrationInterface {
  name = 'ClusterNodes1765710000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE nodes (
        id text PRIMARY KEY,
        instance uuid NOT NULL,
        role text NOT NULL,
        host text NOT NULL,
        pid integer NOT NULL,
        version text NOT NULL,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        stopped_at timestamptz NULL
      )`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE nodes`);
  }
}
