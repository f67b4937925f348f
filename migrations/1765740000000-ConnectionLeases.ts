import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Cluster-wide quotas (issue 15). `connection_leases`: one row per live WebSocket connection,
 * valid while its node's instance is alive in `nodes` (so the node's heartbeat renews all its
 * leases in one statement), counted against the channel's max_connections by every node.
 * `throttle_counters`: fixed-window handshake counters shared by the nodes (@nestjs/throttler's
 * storage, backed by Postgres); expired rows are swept.
 */
export class ConnectionLeases1765740000000 implements MigrationInterface {
  name = 'ConnectionLeases1765740000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE connection_leases (
        id uuid PRIMARY KEY,
        node text NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
        instance uuid NOT NULL,
        channel text NOT NULL,
        subject text NOT NULL,
        session_id uuid NULL,
        remote_address text NULL,
        since timestamptz NOT NULL
      )`);
    await q.query(`CREATE INDEX connection_leases_channel_idx ON connection_leases (channel)`);
    await q.query(`CREATE INDEX connection_leases_node_idx ON connection_leases (node)`);
    await q.query(
      `CREATE INDEX connection_leases_session_idx ON connection_leases (session_id)
        WHERE session_id IS NOT NULL`,
    );
    await q.query(`
      CREATE TABLE throttle_counters (
        key text PRIMARY KEY,
        hits integer NOT NULL,
        window_ends_at timestamptz NOT NULL,
        blocked_until timestamptz NULL
      )`);
    await q.query(
      `CREATE INDEX throttle_counters_expiry_idx ON throttle_counters (window_ends_at)`,
    );
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE throttle_counters`);
    await q.query(`DROP TABLE connection_leases`);
  }
}
