import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

@Entity('session_events')
@Index('ix_session_events_session_at', ['sessionId', 'at'])
export class SessionEventEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('uuid', { name: 'session_id' })
  sessionId!: string;

  @Column('timestamptz')
  at!: Date;

  @Column('text')
  type!: string;

  @Column('uuid', { name: 'connection_id', nullable: true })
  connectionId!: string | null;

  @Column('jsonb', { default: () => `'{}'` })
  detail!: Record<string, unknown>;
}
