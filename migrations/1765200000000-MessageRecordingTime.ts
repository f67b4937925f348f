import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Messages timed into recordings: each message keeps the time at which it arrived on the
 * recording's timeline (`recording_ms`, null for a message outside the recording: pushed after its
 * session ended), and a session keeps the wall-clock time of its capture clock's zero
 * (`media_origin_at`, from its first frame's arrival), so a node that rebuilds the session after a
 * crash times its later messages on the same timeline.
 */
export class MessageRecordingTime1765200000000 implements MigrationInterface {
  name = 'MessageRecordingTime1765200000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE session_messages ADD COLUMN recording_ms bigint NULL`);
    await q.query(
      `ALTER TABLE session_messages ADD CONSTRAINT ck_session_messages_recording_ms
         CHECK (recording_ms IS NULL OR recording_ms >= 0)`,
    );
    await q.query(`ALTER TABLE sessions ADD COLUMN media_origin_at timestamptz NULL`);
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE sessions DROP COLUMN media_origin_at`);
    await q.query(`ALTER TABLE session_messages DROP CONSTRAINT ck_session_messages_recording_ms`);
    await q.query(`ALTER TABLE session_messages DROP COLUMN recording_ms`);
  }
}
