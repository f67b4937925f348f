import type { DecodeCheck } from '../media/recording.entity';
import type { Storage, UploadState } from '../storage/upload-policy';
import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import type { Principal } from '../auth/scopes';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { SessionsService } from '../sessions/sessions.service';
import type { SessionStatus } from '../sessions/session.types';
import { SessionRegistry } from '../stream/session-registry.service';
import {
  CURSOR_TIME_SQL,
  type Cursor,
  type Page,
  pageOf,
  paramDocuments,
  SqlWhere,
} from './admin-query';
import { type AuditRow, AUDIT_COLUMNS, auditOf } from './admin-audits.service';
import type { RecordingDetail, SessionDetail, SessionSummary } from './admin-api.schema';
export type { RecordingDetail, SessionDetail, SessionSummary } from './admin-api.schema';

/** What a session search filters by (validated by the controller). */
export interface SessionFilter {
  status?: SessionStatus;
  channel?: string;
  subject?: string;
  from?: Date;
  to?: Date;
  /** `param.<key>=value` filters: every one must match the session's `open` params. */
  params: Array<[string, string]>;
  cursor?: Cursor;
  limit: number;
}

/** Messages and events a session detail returns at most (the oldest first). */
const DETAIL_ROWS_MAX = 1000;

interface SessionRow {
  id: string;
  subject: string;
  channel: string;
  status: SessionStatus;
  params: Record<string, unknown>;
  node: string;
  last_seq: string;
  video_frames: string;
  audio_frames: string;
  rejected_frames: string;
  bytes_in: string;
  created_at: Date;
  updated_at: Date;
  closed_at: Date | null;
  cursor_at: string;
}

@Injectable()
export class AdminSessionsService {
  constructor(
    @InjectDataSource() private readonly db: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly sessions: SessionsService,
    private readonly registry: SessionRegistry,
  ) {}

  /**
   * Sessions newest first. A `param.<key>` filter is a jsonb containment on `params`, which the
   * GIN index ix_sessions_params (jsonb_path_ops) answers; the documents are bound parameters.
   */
  async search(filter: SessionFilter): Promise<Page<SessionSummary>> {
    const { sql, params } = sessionSearchSql(filter);
    const rows = await this.db.query<SessionRow[]>(sql, params);
    return pageOf(rows, filter.limit, summaryOf, (r) => ({ at: r.cursor_at, id: r.id }));
  }

  /** The session with its history, connections, events, messages and recording; 404 if none. */
  async detail(admin: Principal, id: string): Promise<SessionDetail> {
    const view = await this.sessions.view(admin, id);
    const [audits, events, messages, recordings] = await Promise.all([
      this.db.query<AuditRow[]>(
        `SELECT ${AUDIT_COLUMNS} FROM connection_audits WHERE session_id = $1 ORDER BY at, id`,
        [id],
      ),
      this.db.query<EventRow[]>(
        `SELECT at, type, connection_id, detail FROM session_events
          WHERE session_id = $1 ORDER BY at, id LIMIT ${DETAIL_ROWS_MAX + 1}`,
        [id],
      ),
      this.db.query<MessageRow[]>(
        `SELECT id, direction, client_id, body, sender, created_at, recording_ms FROM session_messages
          WHERE session_id = $1 ORDER BY created_at, id LIMIT ${DETAIL_ROWS_MAX + 1}`,
        [id],
      ),
      this.db.query<RecordingRow[]>(
        `SELECT id, status, failure_reason, bytes, duration_ms, frame_count, width, height,
                video_codec, audio_codec, sha256, created_at, ready_at,
                decode_check, decode_frames, decode_errors, decode_checked_at,
                storage, object_key, upload_state, upload_attempts, upload_error,
                upload_retry_at, uploaded_at
           FROM recordings WHERE session_id = $1`,
        [id],
      ),
    ]);
    const runtime = this.registry.get(id);
    const sink = runtime?.attached ?? null;
    const { recording: _recording, ...session } = view;
    return {
      session,
      statusHistory: view.statusHistory,
      live: runtime
        ? {
            node: this.config.NODE_ID,
            attached: sink ? { transport: sink.transport, connectionId: sink.connectionId } : null,
          }
        : null,
      connections: audits.map(auditOf),
      events: events.slice(0, DETAIL_ROWS_MAX).map((e) => ({
        at: e.at.toISOString(),
        type: e.type,
        connectionId: e.connection_id,
        detail: e.detail,
      })),
      messages: messages.slice(0, DETAIL_ROWS_MAX).map((m) => ({
        id: m.id,
        direction: m.direction,
        clientId: m.client_id,
        body: m.body,
        sender: m.sender,
        createdAt: m.created_at.toISOString(),
        recordingMs: m.recording_ms === null ? null : Number(m.recording_ms),
      })),
      truncated: events.length > DETAIL_ROWS_MAX || messages.length > DETAIL_ROWS_MAX,
      recording: recordings[0] ? recordingOf(recordings[0]) : null,
    };
  }
}

/**
 * The query of a session search, with its bind parameters (exported so a test can EXPLAIN it).
 * A `param.<key>` filter is a jsonb containment on `params`, which the GIN index
 * ix_sessions_params (jsonb_path_ops) answers; the documents are bound, never spliced in.
 */
export function sessionSearchSql(filter: SessionFilter): { sql: string; params: unknown[] } {
  const where = new SqlWhere();
  where.equals('status', filter.status);
  where.equals('channel', filter.channel);
  where.equals('subject', filter.subject);
  where.range('created_at', filter.from, filter.to);
  for (const [key, value] of filter.params) {
    const docs = paramDocuments(key, value).map((d) => `params @> ${where.bind(d)}::jsonb`);
    where.add(docs.length === 1 ? docs[0] : `(${docs.join(' OR ')})`);
  }
  where.after('created_at', filter.cursor);
  return {
    sql: `SELECT id, subject, channel, status, params, node, last_seq, video_frames, audio_frames,
              rejected_frames, bytes_in, created_at, updated_at, closed_at,
              ${CURSOR_TIME_SQL('created_at')} AS cursor_at
         FROM sessions ${where.sql()}
        ORDER BY created_at DESC, id DESC
        LIMIT ${filter.limit + 1}`,
    params: where.params,
  };
}

interface EventRow {
  at: Date;
  type: string;
  connection_id: string | null;
  detail: unknown;
}

interface MessageRow {
  id: string;
  direction: 'in' | 'out';
  client_id: string;
  body: unknown;
  sender: string | null;
  created_at: Date;
  /** bigint: a string from pg. */
  recording_ms: string | null;
}

interface RecordingRow {
  id: string;
  status: string;
  failure_reason: string | null;
  bytes: string | null;
  duration_ms: string | null;
  frame_count: number | null;
  width: number | null;
  height: number | null;
  video_codec: string | null;
  audio_codec: string | null;
  sha256: string | null;
  created_at: Date;
  ready_at: Date | null;
  decode_check: DecodeCheck | null;
  decode_frames: number | null;
  decode_errors: string | null;
  decode_checked_at: Date | null;
  storage: Storage;
  object_key: string | null;
  upload_state: UploadState | null;
  upload_attempts: number;
  upload_error: string | null;
  upload_retry_at: Date | null;
  uploaded_at: Date | null;
}

function summaryOf(r: SessionRow): SessionSummary {
  return {
    id: r.id,
    subject: r.subject,
    channel: r.channel,
    status: r.status,
    params: r.params,
    node: r.node,
    lastSeq: Number(r.last_seq),
    videoFrames: Number(r.video_frames),
    audioFrames: Number(r.audio_frames),
    rejectedFrames: Number(r.rejected_frames),
    bytesIn: Number(r.bytes_in),
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    closedAt: r.closed_at?.toISOString() ?? null,
  };
}

function recordingOf(r: RecordingRow): RecordingDetail {
  return {
    id: r.id,
    status: r.status,
    failureReason: r.failure_reason,
    bytes: r.bytes === null ? null : Number(r.bytes),
    durationMs: r.duration_ms === null ? null : Number(r.duration_ms),
    frameCount: r.frame_count,
    width: r.width,
    height: r.height,
    videoCodec: r.video_codec,
    audioCodec: r.audio_codec,
    sha256: r.sha256,
    createdAt: r.created_at.toISOString(),
    readyAt: r.ready_at?.toISOString() ?? null,
    decodeCheck:
      r.decode_check === null
        ? null
        : {
            status: r.decode_check,
            frames: r.decode_frames,
            errors: r.decode_errors,
            checkedAt: r.decode_checked_at?.toISOString() ?? null,
          },
    storage: {
      location: r.storage,
      objectKey: r.object_key,
      upload:
        r.upload_state === null
          ? null
          : {
              state: r.upload_state,
              attempts: r.upload_attempts,
              error: r.upload_error,
              retryAt: r.upload_retry_at?.toISOString() ?? null,
              uploadedAt: r.uploaded_at?.toISOString() ?? null,
            },
    },
  };
}
