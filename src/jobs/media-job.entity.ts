import { Check, Column, Entity, ForeignKey, Index, PrimaryColumn } from 'typeorm';
import { bigintColumn } from '../database/columns';
import type { JobOutput } from './engine';

/** A media job's states; `completed`, `failed` and `cancelled` are final. */
export const MEDIA_JOB_STATES = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const;
export type MediaJobState = (typeof MEDIA_JOB_STATES)[number];

/**
 * One media job: the record the API answers from. pg-boss carries the work (its job has the same
 * id); this row says what was asked, by whom, what happened and where the outputs are.
 */
@Entity('media_jobs')
// Keyset pages of a caller's jobs, newest first: (subject, created_at DESC, id DESC), which
// TypeORM cannot express.
@Index('ix_media_jobs_subject_created_id', { synchronize: false })
@Index('ix_media_jobs_state_node', ['state', 'node'])
@Index('ix_media_jobs_finished', ['finishedAt'])
@Check('ck_media_jobs_state', `state IN ('queued', 'running', 'completed', 'failed', 'cancelled')`)
export class MediaJobEntity {
  @PrimaryColumn('uuid')
  id!: string;

  /** Who submitted it (`sub`): the owner, who alone (with admins) sees it. */
  @Column('text')
  subject!: string;

  @Column('text')
  channel!: string;

  @Column('text')
  type!: string;

  @Column('text')
  state!: MediaJobState;

  /** The spec as submitted (input references, not files; no webhook secret). */
  @Column('jsonb')
  spec!: Record<string, unknown>;

  /** What the engine runs: the spec with every input a file in the job's folder. */
  @Column('jsonb')
  plan!: Record<string, unknown>;

  /** 0..100 of the current attempt. */
  @Column('real', { default: 0 })
  progress!: number;

  /** Attempts started so far (a restart mid-job counts as one). */
  @Column('integer', { default: 0 })
  attempts!: number;

  @Column('integer', { name: 'max_attempts' })
  maxAttempts!: number;

  /** The node running the current attempt, or that ran the last one. */
  @Column('text', { nullable: true })
  node!: string | null;

  /**
   * The current attempt's token: progress and completion are written only by the run holding it,
   * so a late duplicate of an earlier attempt can never complete the job a second time.
   */
  @Column('uuid', { name: 'run_token', nullable: true })
  runToken!: string | null;

  /** Why it failed (final), or why the last attempt failed (while it is retried). */
  @Column('text', { nullable: true })
  error!: string | null;

  @Column('jsonb', { nullable: true })
  outputs!: JobOutput[] | null;

  /** When retention removed the outputs (the row stays as the record). */
  @Column('timestamptz', { name: 'outputs_expired_at', nullable: true })
  outputsExpiredAt!: Date | null;

  /** Bytes of the inputs in the job's folder (uploads and linked recordings). */
  @Column('bigint', { name: 'input_bytes', default: 0, transformer: bigintColumn })
  inputBytes!: number;

  @Column('text', { name: 'webhook_url', nullable: true })
  webhookUrl!: string | null;

  /** Signs the webhook deliveries; never returned by the API nor logged. */
  @Column('text', { name: 'webhook_secret', nullable: true })
  webhookSecret!: string | null;

  /** When the final state's webhook was handed to the delivery queue (null: not yet). */
  @Column('timestamptz', { name: 'webhook_enqueued_at', nullable: true })
  webhookEnqueuedAt!: Date | null;

  @Column('timestamptz', { name: 'created_at', default: () => 'now()' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'updated_at', default: () => 'now()' })
  updatedAt!: Date;

  /** When the first attempt started. */
  @Column('timestamptz', { name: 'started_at', nullable: true })
  startedAt!: Date | null;

  /** When the current (or last) attempt started. */
  @Column('timestamptz', { name: 'run_started_at', nullable: true })
  runStartedAt!: Date | null;

  @Column('timestamptz', { name: 'finished_at', nullable: true })
  finishedAt!: Date | null;
}

/** What happened to a job, in order: its audit trail (the row shows only the latest state). */
@Entity('media_job_events')
@Index('ix_media_job_events_job_at', ['jobId', 'at'])
export class MediaJobEventEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('uuid', { name: 'job_id' })
  @ForeignKey(() => MediaJobEntity, { name: 'fk_media_job_events_job', onDelete: 'CASCADE' })
  jobId!: string;

  @Column('timestamptz')
  at!: Date;

  /** submitted, started, retried, reclaimed, completed, failed, cancelled, expired. */
  @Column('text')
  type!: string;

  @Column('text')
  node!: string;

  /** Who caused it, when a caller did (submit, cancel); null for the queue's own steps. */
  @Column('text', { nullable: true })
  subject!: string | null;

  @Column('jsonb', { default: () => `'{}'` })
  detail!: Record<string, unknown>;
}
