import { Check, Column, Entity, ForeignKey, Index, PrimaryColumn } from 'typeorm';
import { SessionEntity } from '../sessions/session.entity';
import { bigintColumn } from '../database/columns';

export const RECORDING_STATUSES = [
  'pending',
  'recording',
  'finalizing',
  'ready',
  'failed',
] as const;
export type RecordingStatus = (typeof RECORDING_STATUSES)[number];

/** The decode check of a ready recording (`DecodeCheckService`); null: not checked. */
export const DECODE_CHECKS = ['pending', 'checking', 'passed', 'failed'] as const;
export type DecodeCheck = (typeof DECODE_CHECKS)[number];

@Entity('recordings')
@Index('ix_recordings_status_updated', ['status', 'updatedAt'])
@Index('ux_recordings_session', ['sessionId'], { unique: true })
@Index('ix_recordings_decode_check', ['readyAt'], {
  where: `decode_check IN ('pending', 'checking')`,
})
@Check(
  'ck_recordings_decode_check',
  `decode_check IS NULL OR decode_check IN ('pending', 'checking', 'passed', 'failed')`,
)
@Check(
  'ck_recordings_status',
  `status IN ('pending', 'recording', 'finalizing', 'ready', 'failed')`,
)
export class RecordingEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('uuid', { name: 'session_id' })
  @ForeignKey(() => SessionEntity, { name: 'fk_recordings_session', onDelete: 'CASCADE' })
  sessionId!: string;

  @Column('text')
  status!: RecordingStatus;

  @Column('text', { name: 'failure_reason', nullable: true })
  failureReason!: string | null;

  @Column('text', { nullable: true })
  path!: string | null;

  @Column('bigint', { nullable: true, transformer: bigintColumn })
  bytes!: number | null;

  @Column('bigint', { name: 'duration_ms', nullable: true, transformer: bigintColumn })
  durationMs!: number | null;

  @Column('integer', { name: 'frame_count', nullable: true })
  frameCount!: number | null;

  @Column('integer', { nullable: true })
  width!: number | null;

  @Column('integer', { nullable: true })
  height!: number | null;

  @Column('text', { name: 'video_codec', nullable: true })
  videoCodec!: string | null;

  @Column('text', { name: 'audio_codec', nullable: true })
  audioCodec!: string | null;

  @Column('text', { nullable: true })
  sha256!: string | null;

  @Column('timestamptz', { name: 'created_at', default: () => 'now()' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'updated_at', default: () => 'now()' })
  updatedAt!: Date;

  @Column('timestamptz', { name: 'ready_at', nullable: true })
  readyAt!: Date | null;

  @Column('text', { name: 'decode_check', nullable: true })
  decodeCheck!: DecodeCheck | null;

  /** Video frames ffprobe decoded. */
  @Column('integer', { name: 'decode_frames', nullable: true })
  decodeFrames!: number | null;

  /** What the decoder reported, when the check failed. */
  @Column('text', { name: 'decode_errors', nullable: true })
  decodeErrors!: string | null;

  @Column('timestamptz', { name: 'decode_checked_at', nullable: true })
  decodeCheckedAt!: Date | null;
}
