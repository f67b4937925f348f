import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Where each recording lives (issue 15): `local` under RECORDINGS_DIR, or `s3` once uploaded to
 * RECORDINGS_S3_URL and verified. The upload columns are its queue: rows are claimed with
 * FOR UPDATE SKIP LOCKED, and a failed upload waits until `upload_retry_at`.
 */
export class RecordingStorage1765840000000 implements MigrationInterface {
  name = 'RecordingStorage1765840000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE recordings ADD COLUMN storage text NOT NULL DEFAULT 'local'`);
    await q.query(`ALTER TABLE recordings ADD COLUMN object_key text NULL`);
    await q.query(`ALTER TABLE recordings ADD COLUMN upload_state text NULL`);
    await q.query(`ALTER TABLE recordings ADD COLUMN upload_attempts integer NOT NULL DEFAULT 0`);
    await q.query(`ALTER TABLE recordings ADD COLUMN upload_error text NULL`);
    await q.query(`ALTER TABLE recordings ADD COLUMN upload_retry_at timestamptz NULL`);
    await q.query(`ALTER TABLE recordings ADD COLUMN uploaded_at timestamptz NULL`);
    await q.query(
      `ALTER TABLE recordings ADD CONSTRAINT ck_recordings_storage
         CHECK (storage IN ('local', 's3') AND (storage = 'local' OR object_key IS NOT NULL))`,
    );
    await q.query(
      `ALTER TABLE recordings ADD CONSTRAINT ck_recordings_upload_state
         CHECK (upload_state IS NULL OR upload_state IN ('pending', 'uploading', 'uploaded'))`,
    );
    // The upload queue: ready recordings that still have a local file and are not uploaded.
    await q.query(
      `CREATE INDEX ix_recordings_upload ON recordings (ready_at)
         WHERE status = 'ready' AND path IS NOT NULL`,
    );
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX ix_recordings_upload`);
    await q.query(`ALTER TABLE recordings DROP CONSTRAINT ck_recordings_upload_state`);
    await q.query(`ALTER TABLE recordings DROP CONSTRAINT ck_recordings_storage`);
    await q.query(`ALTER TABLE recordings DROP COLUMN uploaded_at`);
    await q.query(`ALTER TABLE recordings DROP COLUMN upload_retry_at`);
    await q.query(`ALTER TABLE recordings DROP COLUMN upload_error`);
    await q.query(`ALTER TABLE recordings DROP COLUMN upload_attempts`);
    await q.query(`ALTER TABLE recordings DROP COLUMN upload_state`);
    await q.query(`ALTER TABLE recordings DROP COLUMN object_key`);
    await q.query(`ALTER TABLE recordings DROP COLUMN storage`);
  }
}
