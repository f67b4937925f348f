import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

export type MessageDirection = 'in' | 'out';

/** A business text message of a session: `in` from the client, `out` pushed to it. */
@Entity('session_messages')
@Index('ix_session_messages_session_created', ['sessionId', 'createdAt'])
@Index('ux_session_messages_client_id', ['sessionId', 'direction', 'clientId'], { unique: true })
export class SessionMessageEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('uuid', { name: 'session_id' })
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
}
