import { Check, Column, Entity, PrimaryColumn } from 'typeorm';
import type { VideoCodecFamily } from '../protocol/codecs';

/** Per-channel overrides of the quota defaults from the environment; null keeps the default. */
@Entity('channel_quotas')
@Check('ck_channel_quotas_max_connections', `max_connections >= 0`)
@Check('ck_channel_quotas_handshakes', `handshakes_per_min >= 0`)
@Check('ck_channel_quotas_max_fps', `max_fps > 0`)
@Check('ck_channel_quotas_max_kbps', `max_kbps > 0`)
@Check(
  'ck_channel_quotas_video_codecs',
  `video_codecs IS NULL OR (cardinality(video_codecs) >= 1 AND video_codecs <@ ARRAY['jpeg', 'avc', 'vp8', 'vp9']::text[])`,
)
@Check(
  'ck_channel_quotas_max_size',
  `(max_width IS NULL OR max_width BETWEEN 16 AND 8192) AND (max_height IS NULL OR max_height BETWEEN 16 AND 8192)`,
)
export class ChannelQuotaEntity {
  @PrimaryColumn('text')
  channel!: string;

  @Column('integer', { name: 'max_connections', nullable: true })
  maxConnections!: number | null;

  @Column('integer', { name: 'handshakes_per_min', nullable: true })
  handshakesPerMin!: number | null;

  @Column('integer', { name: 'max_fps', nullable: true })
  maxFps!: number | null;

  @Column('integer', { name: 'max_kbps', nullable: true })
  maxKbps!: number | null;

  /** Video codec families accepted in `open` (src/protocol/codecs.ts). */
  @Column('text', { name: 'video_codecs', array: true, nullable: true })
  videoCodecs!: VideoCodecFamily[] | null;

  /** Largest coded size of compressed video. */
  @Column('integer', { name: 'max_width', nullable: true })
  maxWidth!: number | null;

  @Column('integer', { name: 'max_height', nullable: true })
  maxHeight!: number | null;

  @Column('timestamptz', { name: 'updated_at', default: () => 'now()' })
  updatedAt!: Date;
}
