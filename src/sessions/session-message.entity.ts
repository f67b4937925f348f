import { Check, Column, Entity, ForeignKey, Index, PrimaryColumn } from 'typeorm';
import { bigintColumn } from '../database/columns';
import { SessionEntity } from './session.entity';

export type MessageDirection = 'in' | 'out';

/** A business text message of a session: `in` from the client, `out` pushed to it. */
@Entity('session_messages')
@Index('ix_session_messages_session_created', ['sessionId', 'createdAt'])
@Index('ux_session_messages_client_id', ['sessionId', 'direction', 'clientId'], { unique: true })
@Check('ck_session_messages_direction', `direction IN ('in', 'out')`)
@Check('ck_session_messages_recording_ms', `recording_ms IS NULL OR recording_ms >= 0`)
export class SessionMessageEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('uuid', { name: 'session_id' })
  @ForeignKey(() => SessionEntity, { name: 'fk_session_messages_session', onDelete: 'CASCADE' })
  sessionId!: string;

  @Column('text')
  direction!: MessageDirection;

  /** The `id` the client (or the business API) chose; resends with the same id are idempotent. */
  @Column('text', { name: 'client_id' })
  clientId!: string;

  @Column('jsonb')
  body!: unknown;

  @Column('text', { nullable: true })
  sender!: string | null;

  @Column('timestamptz', { name: 'created_at', default: () => 'now()' })
  createdAt!: Date;

  /**
   * When the message arrived, in ms on its session's recording timeline (the frames' capture
   * pts); 0 before the first frame; null when it is not part of the recording (the session had
   * ended). docs/recording.md, "Messages".
   */
  @Column('bigint', { name: 'recording_ms', nullable: true, transformer: bigintColumn })
  recordingMs!: number | null;
}
