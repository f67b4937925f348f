import type { MigrationInterface, QueryRunner } from 'typeorm';

export class NodeEvents1764900000000 implements MigrationInterface {
  name = 'NodeEvents1764900000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE node_events (
        id uuid PRIMARY KEY,
        at timestamptz NOT NULL,
        node text NOT NULL,
        type text NOT NULL,
        detail jsonb NOT NULL DEFAULT '{}'
      )`);
    await q.query(`CREATE INDEX ix_node_events_node_at ON node_events (node, at)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE node_events`);
  }
}
