import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Per-channel media policy for compressed video (issue 14): the video codec families a channel
 * accepts in `open`, and the largest coded size of its compressed video. Null keeps the
 * environment's default (VIDEO_CODECS, VIDEO_MAX_WIDTH, VIDEO_MAX_HEIGHT).
 */
export class ChannelVideoPolicy1765600000000 implements MigrationInterface {
  name = 'ChannelVideoPolicy1765600000000';

  public async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE channel_quotas ADD COLUMN video_codecs text[] NULL`);
    await q.query(`ALTER TABLE channel_quotas ADD COLUMN max_width integer NULL`);
    await q.query(`ALTER TABLE channel_quotas ADD COLUMN max_height integer NULL`);
    await q.query(
      `ALTER TABLE channel_quotas ADD CONSTRAINT ck_channel_quotas_video_codecs
         CHECK (video_codecs IS NULL OR (cardinality(video_codecs) >= 1
           AND video_codecs <@ ARRAY['jpeg', 'avc', 'vp8', 'vp9']::text[]))`,
    );
    await q.query(
      `ALTER TABLE channel_quotas ADD CONSTRAINT ck_channel_quotas_max_size
         CHECK ((max_width IS NULL OR max_width BETWEEN 16 AND 8192)
           AND (max_height IS NULL OR max_height BETWEEN 16 AND 8192))`,
    );
  }

  public async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE channel_quotas DROP CONSTRAINT ck_channel_quotas_max_size`);
    await q.query(`ALTER TABLE channel_quotas DROP CONSTRAINT ck_channel_quotas_video_codecs`);
    await q.query(`ALTER TABLE channel_quotas DROP COLUMN max_height`);
    await q.query(`ALTER TABLE channel_quotas DROP COLUMN max_width`);
    await q.query(`ALTER TABLE channel_quotas DROP COLUMN video_codecs`);
  }
}
