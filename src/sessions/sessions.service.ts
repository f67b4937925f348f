import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Repository } from 'typeorm';
import { z } from 'zod';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
import { AuditWriter } from '../audit/audit-writer.service';
import { hasScope, type Principal } from '../auth/scopes';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { RECORDING_STATUSES, RecordingEntity } from '../media/recording.entity';
import {
  audioSettingsSchema,
  type OpenSession,
  type Opened,
  recordingSettingsSchema,
  videoSettingsSchema,
} from '../protocol/open-session.schema';
import type { SessionCounts } from './session-store.service';
import { SessionEntity } from './session.entity';
import { SESSION_STATUSES } from './session.types';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** What `GET /v1/sessions/{id}` returns (its OpenAPI schema and its type). */
export const sessionViewSchema = z.strictObject({
  id: z.string().uuid(),
  subject: z.string(),
  channel: z.string(),
  status: z.enum(SESSION_STATUSES),
  statusHistory: z.array(
    z.strictObject({ status: z.enum(SESSION_STATUSES), at: z.string(), cause: z.string() }),
  ),
  params: z.record(z.string(), z.unknown()),
  video: videoSettingsSchema,
  audio: audioSettingsSchema.nullable(),
  recordingSettings: recordingSettingsSchema.nullable(),
  lastSeq: z.number().int(),
  videoFrames: z.number().int(),
  audioFrames: z.number().int(),
  rejectedFrames: z.number().int(),
  bytesIn: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
  closedAt: z.string().nullable(),
  recording: z
    .strictObject({
      id: z.string().uuid(),
      status: z.enum(RECORDING_STATUSES),
      durationMs: z.number().nullable(),
    })
    .nullable(),
});

export type SessionView = z.output<typeof sessionViewSchema>;

@Injectable()
export class SessionsService {
  /** The counters of a session live on this node, which are newer than its row's. */
  private liveCounts: (id: string) => SessionCounts | undefined = () => undefined;

  constructor(
    @InjectRepository(SessionEntity) private readonly sessions: Repository<SessionEntity>,
    @InjectRepository(RecordingEntity) private readonly recordings: Repository<RecordingEntity>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly audit: AuditWriter,
  ) {}

  /**
   * Creates an open session row owned by the caller; returns `opened` and the hash of its resume
   * token (the token itself is only ever given to the client).
   */
  async create(
    owner: Principal,
    body: OpenSession,
    media: Opened['media'],
  ): Promise<{ opened: Opened; resumeTokenHash: string }> {
    const id = randomUUID();
    const resumeToken = randomBytes(32).toString('base64url');
    const now = new Date();
    const row: Partial<SessionEntity> = {
      id,
      subject: owner.subject,
      channel: owner.channel,
      status: 'open',
      statusHistory: [{ status: 'open', at: now.toISOString(), cause: 'opened' }],
      params: body.params,
      video: body.video,
      audio: body.audio ?? null,
      recordingSettings: body.recording ?? null,
      resumeTokenHash: hashResumeToken(resumeToken),
      node: this.config.NODE_ID,
      createdAt: now,
      updatedAt: now,
    };
    // TypeORM's deep-partial type cannot express jsonb `unknown` values; the row is complete.
    await this.sessions.insert(row as QueryDeepPartialEntity<SessionEntity>);
    this.audit.record({
      kind: 'session_event',
      id: randomUUID(),
      sessionId: id,
      at: now,
      type: 'created',
      connectionId: null,
      detail: { subject: owner.subject, channel: owner.channel },
    });
    return {
      opened: buildOpened(this.config, id, resumeToken, 0, media),
      resumeTokenHash: row.resumeTokenHash as string,
    };
  }

  /**
   * The session if the caller owns it or is an admin. Someone else's session is reported as not
   * found, exactly like a missing one, so that ids cannot be probed.
   */
  async findVisible(principal: Principal, id: string): Promise<SessionEntity> {
    const session = UUID.test(id) ? await this.sessions.findOneBy({ id }) : null;
    if (!session || (session.subject !== principal.subject && !hasScope(principal, 'admin'))) {
      throw new AppError(ErrorCode.NotFound, 'session not found');
    }
    return session;
  }

  /**
   * Set by the stream runtime (which depends on this module, not the other way round), so that a
   * live session's view shows what its spool holds now, not the last once-a-second flush.
   */
  useLiveCounts(counts: (id: string) => SessionCounts | undefined): void {
    this.liveCounts = counts;
  }

  async view(principal: Principal, id: string): Promise<SessionView> {
    const s = await this.findVisible(principal, id);
    const recording = await this.recordings.findOneBy({ sessionId: s.id });
    const counts: SessionCounts = this.liveCounts(s.id) ?? s;
    return {
      id: s.id,
      subject: s.subject,
      channel: s.channel,
      status: s.status,
      statusHistory: s.statusHistory,
      params: s.params,
      video: s.video,
      audio: s.audio,
      recordingSettings: s.recordingSettings,
      lastSeq: counts.lastSeq,
      videoFrames: counts.videoFrames,
      audioFrames: counts.audioFrames,
      rejectedFrames: counts.rejectedFrames,
      bytesIn: counts.bytesIn,
      createdAt: s.createdAt.toISOString(),
      updatedAt: s.updatedAt.toISOString(),
      closedAt: s.closedAt?.toISOString() ?? null,
      recording: recording
        ? { id: recording.id, status: recording.status, durationMs: recording.durationMs }
        : null,
    };
  }
}

/** The fields of `opened` for a session; `lastSeq` is the highest seq durably stored. */
export function buildOpened(
  config: AppConfig,
  sessionId: string,
  resumeToken: string,
  lastSeq: number,
  media: Opened['media'],
): Opened {
  return {
    sessionId,
    resumeToken,
    lastSeq,
    ack: { intervalMs: config.ACK_INTERVAL_MS, maxFrames: config.ACK_MAX_FRAMES },
    limits: { maxFrameBytes: config.MAX_FRAME_BYTES, maxFps: config.STREAM_MAX_FPS },
    media,
  };
}

export function hashResumeToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
