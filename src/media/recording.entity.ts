import { Check, Column, Entity, ForeignKey, Index, PrimaryColumn } from 'typeorm';
import { SessionEntity } from '../sessions/session.entity';
import { bigintColumn } from '../database/columns';
import type { Storage, UploadState } from '../storage/upload-policy';

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
@Index('ix_recordings_upload', ['readyAt'], {
  where: `status = 'ready' AND path IS NOT NULL`,
})
@Check(
  'ck_recordings_storage',
  `storage IN ('local', 's3') AND (storage = 'local' OR object_key IS NOT NULL)`,
)
@Check(
  'ck_recordings_upload_state',
  `upload_state IS NULL OR upload_state IN ('pending', 'uploading', 'uploaded')`,
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

  /** `local`: the file at `path`; `s3`: the object at `objectKey`, verified (src/storage). */
  @Column('text', { default: 'local' })
  storage!: Storage;

  @Column('text', { name: 'object_key', nullable: true })
  objectKey!: string | null;

  /** Null: not queued for upload (RECORDINGS_S3_URL unset, or not ready yet). */
  @Column('text', { name: 'upload_state', nullable: true })
  uploadState!: UploadState | null;

  @Column('integer', { name: 'upload_attempts', default: 0 })
  uploadAttempts!: number;

  /** Why the last attempt failed; kept until an upload succeeds. */
  @Column('text', { name: 'upload_error', nullable: true })
  uploadError!: string | null;

  /** `pending`: not before; `uploading`: the claim's lease, taken again after it. */
  @Column('timestamptz', { name: 'upload_retry_at', nullable: true })
  uploadRetryAt!: Date | null;

  @Column('timestamptz', { name: 'uploaded_at', nullable: true })
  uploadedAt!: Date | null;
}
