import { Column, Entity, Index, PrimaryColumn } from 'typeorm';
import type { AdminActionType } from './audit.types';

/** What an administrator did through the admin API (kicks, quota changes), and who. */
@Entity('admin_actions')
@Index('ix_admin_actions_at', ['at'])
export class AdminActionEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('timestamptz')
  at!: Date;

  @Column('text')
  node!: string;

  /** The admin's subject (`sub` of the token). */
  @Column('text')
  subject!: string;

  @Column('text')
  action!: AdminActionType;

  /** What it was done to: a connection id, a session id or a channel. */
  @Column('text')
  target!: string;

  @Column('jsonb', { default: () => `'{}'` })
  detail!: Record<string, unknown>;
}
