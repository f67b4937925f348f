import { Column, Entity, PrimaryColumn } from 'typeorm';

/** Per-channel overrides of the quota defaults from the environment; null keeps the default. */
@Entity('channel_quotas')
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
