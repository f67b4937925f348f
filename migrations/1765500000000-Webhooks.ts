import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Webhook deliveries (one per idempotency id) and the audit of every delivery attempt. The
 * (created_at, id) indexes serve the admin list newest first (scanned backwards).
 */
export class Webhooks1765500000000 implements MigrationInterface {
  name = 'Webhooks1765500000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE webhook_deliveries (
        id uuid PRIMARY KEY,
        idempotency_id text NOT NULL,
        subject text NOT NULL,
        event text NOT NULL,
        url text NOT NULL,
        payload jsonb NOT NULL,
        secret text NULL,
        state text NOT NULL CONSTRAINT ck_webhook_deliveries_state
          CHECK (state IN ('pending', 'delivered', 'gave_up')),
        attempts integer NOT NULL DEFAULT 0 CONSTRAINT ck_webhook_deliveries_attempts
          CHECK (attempts >= 0),
        created_at timestamptz NOT NULL,
        last_attempt_at timestamptz NULL,
        delivered_at timestamptz NULL
      )`);
    await q.query(
      `CREATE UNIQUE INDEX ux_webhook_deliveries_idempotency_id ON webhook_deliveries (idempotency_id)`,
    );
    await q.query(
      `CREATE INDEX ix_webhook_deliveries_created_id ON webhook_deliveries (created_at, id)`,
    );
    await q.query(
      `CREATE INDEX ix_webhook_deliveries_state_created_id ON webhook_deliveries (state, created_at, id)`,
    );
    await q.query(`
      CREATE TABLE webhook_attempts (
        id uuid PRIMARY KEY,
        delivery_id uuid NOT NULL
          CONSTRAINT fk_webhook_attempts_delivery REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        at timestamptz NOT NULL,
        node text NOT NULL,
        outcome text NULL CONSTRAINT ck_webhook_attempts_outcome
          CHECK (outcome IN ('delivered', 'failed', 'rejected', 'blocked', 'interrupted')),
        duration_ms integer NULL,
        status_code integer NULL,
        error text NULL,
        response_excerpt text NULL
      )`);
    await q.query(
      `CREATE UNIQUE INDEX ux_webhook_attempts_delivery_attempt ON webhook_attempts (delivery_id, attempt)`,
    );
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE webhook_attempts`);
    await q.query(`DROP TABLE webhook_deliveries`);
  }
}
