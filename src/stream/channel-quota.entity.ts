import { Check, Column, Entity, PrimaryColumn } from 'typeorm';

/** Per-channel overrides of the quota defaults from the environment; null keeps the default. */
@Entity('channel_quotas')
@Check('ck_channel_quotas_max_connections', `max_connections >= 0`)
@Check('ck_channel_quotas_handshakes', `handshakes_per_min >= 0`)
@Check('ck_channel_quotas_max_fps', `max_fps > 0`)
@Check('ck_channel_quotas_max_kbps', `max_kbps > 0`)
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

  @Column('timestamptz', { name: 'updated_at', default: () => 'now()' })
  updatedAt!: Date;
}
