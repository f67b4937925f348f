import { Column, Entity, ForeignKey, Index, PrimaryColumn } from 'typeorm';
import { SessionEntity } from '../sessions/session.entity';

@Entity('session_events')
@Index('ix_session_events_session_at', ['sessionId', 'at'])
export class SessionEventEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('uuid', { name: 'session_id' })
  @ForeignKey(() => SessionEntity, { name: 'fk_session_events_session', onDelete: 'CASCADE' })
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
