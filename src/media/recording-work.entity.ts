import { Column, Entity, ForeignKey, Index, PrimaryColumn } from 'typeorm';
import { RecordingEntity } from './recording.entity';

/**
 * A recording a gateway handed to the workers (NODE_ROLE=gateway): who encodes it and until when
 * (the lease), and, once its session ended, the last seq it must hold. Queried in SQL by
 * `RecordingWorkStore`.
 */
@Entity('recording_work')
@Index('ix_recording_work_owner', ['leaseOwner'])
export class RecordingWorkEntity {
  @PrimaryColumn('uuid', { name: 'recording_id' })
  @ForeignKey(() => RecordingEntity, { name: 'fk_recording_work_recording', onDelete: 'CASCADE' })
  recordingId!: string;

  @Column('uuid', { name: 'session_id' })
  sessionId!: string;

  /** The NODE_ID of the worker holding the lease; null: free to claim. */
  @Column('text', { name: 'lease_owner', nullable: true })
  leaseOwner!: string | null;

  @Column('timestamptz', { name: 'lease_expires_at', nullable: true })
  leaseExpiresAt!: Date | null;

  /** Set when the session ended: the recording holds every record up to this seq. */
  @Column('integer', { name: 'final_seq', nullable: true })
  finalSeq!: number | null;

  /** Claims so far (more than one: a worker died or stopped while encoding it). */
  @Column('integer', { default: 0 })
  attempts!: number;

  @Column('timestamptz', { name: 'created_at', default: () => 'now()' })
  createdAt!: Date;
}
