import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The decode check of each recording (issue 14): after a recording is ready, ffprobe decodes it
 * end to end at low priority and the outcome goes on its row. Recordings made before this
 * migration are left unchecked (null).
 */
export class RecordingDecodeCheck1765700000000 implements MigrationInterface {
  name = 'RecordingDecodeCheck1765700000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE recordings ADD COLUMN decode_check text NULL`);
    await q.query(`ALTER TABLE recordings ADD COLUMN decode_frames integer NULL`);
    await q.query(`ALTER TABLE recordings ADD COLUMN decode_errors text NULL`);
    await q.query(`ALTER TABLE recordings ADD COLUMN decode_checked_at timestamptz NULL`);
    await q.query(
      `ALTER TABLE recordings ADD CONSTRAINT ck_recordings_decode_check
         CHECK (decode_check IS NULL OR decode_check IN ('pending', 'checking', 'passed', 'failed'))`,
    );
    await q.query(
      `CREATE INDEX ix_recordings_decode_check ON recordings (ready_at)
         WHERE decode_check IN ('pending', 'checking')`,
    );
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX ix_recordings_decode_check`);
    await q.query(`ALTER TABLE recordings DROP CONSTRAINT ck_recordings_decode_check`);
    await q.query(`ALTER TABLE recordings DROP COLUMN decode_checked_at`);
    await q.query(`ALTER TABLE recordings DROP COLUMN decode_errors`);
    await q.query(`ALTER TABLE recordings DROP COLUMN decode_frames`);
    await q.query(`ALTER TABLE recordings DROP COLUMN decode_check`);
  }
}
