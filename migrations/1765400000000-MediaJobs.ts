import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Media jobs (issue 13): `media_jobs`, the record the jobs API answers from (pg-boss's job of the
 * same id carries the work), and `media_job_events`, each job's audit trail. Rows are kept after
 * retention removes a job's files: `outputs_expired_at` says when.
 */
export class MediaJobs1765400000000 implements MigrationInterface {
  name = 'MediaJobs1765400000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE media_jobs (
        id uuid PRIMARY KEY,
        subject text NOT NULL,
        channel text NOT NULL,
        type text NOT NULL,
        state text NOT NULL CONSTRAINT ck_media_jobs_state
          CHECK (state IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
        spec jsonb NOT NULL,
        plan jsonb NOT NULL,
        progress real NOT NULL DEFAULT 0,
        attempts integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL,
        node text,
        run_token uuid,
        error text,
        outputs jsonb,
        outputs_expired_at timestamptz,
        input_bytes bigint NOT NULL DEFAULT 0,
        webhook_url text,
        webhook_secret text,
        webhook_enqueued_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        run_started_at timestamptz,
        finished_at timestamptz
      )`);
    await q.query(
      `CREATE INDEX ix_media_jobs_subject_created_id ON media_jobs (subject, created_at DESC, id DESC)`,
    );
    await q.query(`CREATE INDEX ix_media_jobs_state_node ON media_jobs (state, node)`);
    await q.query(`CREATE INDEX ix_media_jobs_finished ON media_jobs (finished_at)`);
    await q.query(`
      CREATE TABLE media_job_events (
        id uuid PRIMARY KEY,
        job_id uuid NOT NULL
          CONSTRAINT fk_media_job_events_job REFERENCES media_jobs (id) ON DELETE CASCADE,
        at timestamptz NOT NULL,
        type text NOT NULL,
        node text NOT NULL,
        subject text,
        detail jsonb NOT NULL DEFAULT '{}'
      )`);
    await q.query(`CREATE INDEX ix_media_job_events_job_at ON media_job_events (job_id, at)`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE media_job_events`);
    await q.query(`DROP TABLE media_jobs`);
  }
}
