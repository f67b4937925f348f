import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Recording work for NODE_ROLE=worker (issue 15): one row per recording a gateway hands over, with
 * the lease of the worker encoding it (owner and expiry, renewed in batches) and, once the session
 * has ended, the last seq the recording must hold. The row goes when the recording is ready or
 * failed; the `recordings` row keeps the outcome.
 */
export class RecordingWork1765830000000 implements MigrationInterface {
  name = 'RecordingWork1765830000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE recording_work (
        recording_id uuid PRIMARY KEY
          CONSTRAINT fk_recording_work_recording REFERENCES recordings (id) ON DELETE CASCADE,
        session_id uuid NOT NULL,
        lease_owner text,
        lease_expires_at timestamptz,
        final_seq integer,
        attempts integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX ix_recording_work_owner ON recording_work (lease_owner)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE recording_work`);
  }
}
