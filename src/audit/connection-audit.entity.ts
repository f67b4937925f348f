import { Check, Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { bigintColumn } from '../database/columns';
import type { AuditOutcome, Transport } from './audit.types';

/**
 * One row per handshake: who connected, the outcome, and how the connection ended. Repeated
 * refusals from one address for one reason share a row per window: `count` of them, the first
 * at `at`, the last at `last_at` (null on rows written before aggregation existed).
 */
@Entity('connection_audits')
@Index('ix_connection_audits_at', ['at'])
@Index('ix_connection_audits_channel_at', ['channel', 'at'])
@Index('ix_connection_audits_subject_at', ['subject', 'at'])
@Index('ix_connection_audits_session', ['sessionId'])
@Index('ix_connection_audits_outcome_at', ['outcome', 'at'])
@Index('ix_connection_audits_remote_at', ['remoteAddress', 'at'])
@Check('ck_connection_audits_transport', `transport IN ('ws', 'http')`)
@Check('ck_connection_audits_count', `count >= 1`)
export class ConnectionAuditEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('timestamptz')
  at!: Date;

  @Column('text')
  node!: string;

  @Column('text')
  transport!: Transport;

  @Column('text', { name: 'remote_address', nullable: true })
  remoteAddress!: string | null;

  @Column('text', { name: 'user_agent', nullable: true })
  userAgent!: string | null;

  @Column('text', { nullable: true })
  origin!: string | null;

  @Column('text', { nullable: true })
  subject!: string | null;

  @Column('text', { nullable: true })
  channel!: string | null;

  @Column('text')
  outcome!: AuditOutcome;

  @Column('text', { nullable: true })
  error!: string | null;

  @Column('uuid', { name: 'session_id', nullable: true })
  sessionId!: string | null;

  /** Refusals this row stands for; 1 for every accepted connection. */
  @Column('integer', { default: 1 })
  count!: number;

  @Column('timestamptz', { name: 'last_at', nullable: true })
  lastAt!: Date | null;

  @Column('timestamptz', { name: 'closed_at', nullable: true })
  closedAt!: Date | null;

  @Column('integer', { name: 'close_code', nullable: true })
  closeCode!: number | null;

  @Column('text', { name: 'close_reason', nullable: true })
  closeReason!: string | null;

  @Column('bigint', { name: 'duration_ms', nullable: true, transformer: bigintColumn })
  durationMs!: number | null;

  @Column('bigint', { name: 'bytes_in', nullable: true, transformer: bigintColumn })
  bytesIn!: number | null;

  @Column('bigint', { name: 'bytes_out', nullable: true, transformer: bigintColumn })
  bytesOut!: number | null;

  @Column('bigint', { name: 'frames_in', nullable: true, transformer: bigintColumn })
  framesIn!: number | null;

  @Column('bigint', { name: 'frames_out', nullable: true, transformer: bigintColumn })
  framesOut!: number | null;

  /** The admin's subject when an administrator closed the connection (close_reason `kicked`). */
  @Column('text', { name: 'closed_by', nullable: true })
  closedBy!: string | null;
}
