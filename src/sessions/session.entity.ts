import { Check, Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { bigintColumn } from '../database/columns';
import type {
  AudioSettings,
  RecordingSettings,
  SessionStatus,
  StatusChange,
  VideoSettings,
} from './session.types';

@Entity('sessions')
@Index('ix_sessions_channel_created', ['channel', 'createdAt'])
@Index('ix_sessions_subject_created', ['subject', 'createdAt'])
@Index('ix_sessions_status_updated', ['status', 'updatedAt'])
// A GIN index on params (jsonb_path_ops) for admin queries by business field; TypeORM cannot express it.
@Index('ix_sessions_params', { synchronize: false })
// Keyset pages of the admin API, newest first: (created_at DESC, id DESC), which TypeORM cannot express.
@Index('ix_sessions_created_id', { synchronize: false })
@Check('ck_sessions_status', `status IN ('open', 'interrupted', 'abandoned', 'closed')`)
export class SessionEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('text')
  subject!: string;

  @Column('text')
  channel!: string;

  @Column('text')
  status!: SessionStatus;

  @Column('jsonb', { name: 'status_history', default: () => `'[]'` })
  statusHistory!: StatusChange[];

  @Column('jsonb', { default: () => `'{}'` })
  params!: Record<string, unknown>;

  @Column('jsonb')
  video!: VideoSettings;

  @Column('jsonb', { nullable: true })
  audio!: AudioSettings | null;

  @Column('jsonb', { name: 'recording_settings', nullable: true })
  recordingSettings!: RecordingSettings | null;

  /** sha256 of the resume token; the token itself is only ever sent to the client. */
  @Column('text', { name: 'resume_token_hash' })
  resumeTokenHash!: string;

  /** The node that owns the live runtime of this session. */
  @Column('text')
  node!: string;

  @Column('bigint', { name: 'last_seq', default: 0, transformer: bigintColumn })
  lastSeq!: number;

  @Column('bigint', { name: 'video_frames', default: 0, transformer: bigintColumn })
  videoFrames!: number;

  @Column('bigint', { name: 'audio_frames', default: 0, transformer: bigintColumn })
  audioFrames!: number;

  @Column('bigint', { name: 'rejected_frames', default: 0, transformer: bigintColumn })
  rejectedFrames!: number;

  @Column('bigint', { name: 'bytes_in', default: 0, transformer: bigintColumn })
  bytesIn!: number;

  @Column('timestamptz', { name: 'created_at', default: () => 'now()' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'updated_at', default: () => 'now()' })
  updatedAt!: Date;

  @Column('timestamptz', { name: 'interrupted_at', nullable: true })
  interruptedAt!: Date | null;

  @Column('timestamptz', { name: 'closed_at', nullable: true })
  closedAt!: Date | null;

  /**
   * The wall-clock time of capture time (pts) 0: its first frame's arrival minus that frame's
   * pts. Messages are timed into the recording through it; kept so that a node rebuilding the
   * session after a crash goes on with the same timeline.
   */
  @Column('timestamptz', { name: 'media_origin_at', nullable: true })
  mediaOriginAt!: Date | null;
}
