import { DECODE_CHECKS } from '../media/recording.entity';
import { STORAGES, UPLOAD_STATES } from '../storage/upload-policy';
import { z } from 'zod';
import { AUDIT_OUTCOMES } from '../audit/audit.types';
import { SESSION_STATUSES } from '../sessions/session.types';
import { sessionViewSchema } from '../sessions/sessions.service';
import { capacityStatsSchema } from '../stream/capacity.service';
import { channelLimitsSchema } from '../stream/quota.service';

/**
 * What the admin API answers: each answer's OpenAPI schema and its TypeScript type, in one place.
 * The services build these objects; their types are inferred from here.
 */

const count = z.number().int().min(0);
const when = z.string();

/** A page of a list; `nextCursor` is null on the last page. */
export const pageOf = <T extends z.ZodType>(item: T) =>
  z.strictObject({ items: z.array(item), nextCursor: z.string().nullable() });

/** One session in a search result (counters as last flushed, at most a second behind). */
export const sessionSummarySchema = z.strictObject({
  id: z.string().uuid(),
  subject: z.string(),
  channel: z.string(),
  status: z.enum(SESSION_STATUSES),
  params: z.record(z.string(), z.unknown()),
  node: z.string(),
  lastSeq: count,
  videoFrames: count,
  audioFrames: count,
  rejectedFrames: count,
  bytesIn: count,
  createdAt: when,
  updatedAt: when,
  closedAt: when.nullable(),
});
export type SessionSummary = z.output<typeof sessionSummarySchema>;

/** One connection audit: a handshake, its outcome and how it ended (`close` once closed). */
export const auditViewSchema = z.strictObject({
  id: z.string().uuid(),
  at: when,
  /** Repeated refusals share a row: `count` of them, the last at `lastAt`. */
  count: z.number().int().min(1),
  lastAt: when.nullable(),
  node: z.string(),
  transport: z.enum(['ws', 'http']),
  remoteAddress: z.string().nullable(),
  userAgent: z.string().nullable(),
  origin: z.string().nullable(),
  subject: z.string().nullable(),
  channel: z.string().nullable(),
  outcome: z.enum(AUDIT_OUTCOMES),
  error: z.string().nullable(),
  sessionId: z.string().uuid().nullable(),
  close: z
    .strictObject({
      closedAt: when,
      closeCode: z.number().int().nullable(),
      closeReason: z.string().nullable(),
      /** The admin's subject when an administrator closed it (`kicked`). */
      closedBy: z.string().nullable(),
      durationMs: z.number().nullable(),
      bytesIn: z.number().nullable(),
      bytesOut: z.number().nullable(),
      framesIn: z.number().nullable(),
      framesOut: z.number().nullable(),
    })
    .nullable(),
});
export type AuditView = z.output<typeof auditViewSchema>;

export const recordingDetailSchema = z.strictObject({
  id: z.string().uuid(),
  status: z.string(),
  failureReason: z.string().nullable(),
  bytes: z.number().nullable(),
  durationMs: z.number().nullable(),
  frameCount: z.number().int().nullable(),
  width: z.number().int().nullable(),
  height: z.number().int().nullable(),
  videoCodec: z.string().nullable(),
  audioCodec: z.string().nullable(),
  sha256: z.string().nullable(),
  createdAt: when,
  readyAt: when.nullable(),
  /** ffprobe's decode pass over the ready file (RECORDING_DECODE_CHECK); null: not checked. */
  decodeCheck: z
    .strictObject({
      status: z.enum(DECODE_CHECKS),
      /** Video frames the decoder counted. */
      frames: z.number().int().nullable(),
      /** What the decoder reported when the check failed. */
      errors: z.string().nullable(),
      checkedAt: when.nullable(),
    })
    .nullable(),
  /** Where the recording lives, and its upload to RECORDINGS_S3_URL (docs/recording.md). */
  storage: z.strictObject({
    location: z.enum(STORAGES),
    /** The object's key in the bucket, once an upload began. */
    objectKey: z.string().nullable(),
    /** Null: not queued for upload. */
    upload: z
      .strictObject({
        state: z.enum(UPLOAD_STATES),
        attempts: z.number().int(),
        /** Why the last attempt failed; null once uploaded. */
        error: z.string().nullable(),
        /** When a pending upload is tried again. */
        retryAt: when.nullable(),
        uploadedAt: when.nullable(),
      })
      .nullable(),
  }),
});
export type RecordingDetail = z.output<typeof recordingDetailSchema>;

/** `GET /v1/admin/sessions/{id}`: everything operations ask about one session. */
export const sessionDetailSchema = z.strictObject({
  session: sessionViewSchema.omit({ recording: true }),
  statusHistory: sessionViewSchema.shape.statusHistory,
  /** This node's runtime of the session, when it has one. */
  live: z
    .strictObject({
      node: z.string(),
      attached: z
        .strictObject({
          transport: z.enum(['ws', 'http']),
          connectionId: z.string().uuid().nullable(),
        })
        .nullable(),
    })
    .nullable(),
  /** Every handshake that carried (or tried to resume) the session, with how it ended. */
  connections: z.array(auditViewSchema),
  /** attached, detached, resumed, ... in order. */
  events: z.array(
    z.strictObject({
      at: when,
      type: z.string(),
      connectionId: z.string().uuid().nullable(),
      detail: z.unknown(),
    }),
  ),
  messages: z.array(
    z.strictObject({
      id: z.string(),
      direction: z.enum(['in', 'out']),
      clientId: z.string(),
      body: z.unknown(),
      sender: z.string().nullable(),
      createdAt: when,
      /** When it arrived on the recording's timeline (its cue's start), null outside the recording. */
      recordingMs: z.number().int().nullable(),
    }),
  ),
  /** True when the session has more messages or events than the detail lists. */
  truncated: z.boolean(),
  recording: recordingDetailSchema.nullable(),
});
export type SessionDetail = z.output<typeof sessionDetailSchema>;

export const disconnectedSchema = z.strictObject({
  sessionId: z.string().uuid(),
  /** False when the session was live but had no WebSocket to close. */
  disconnected: z.boolean(),
  /** The node that held the session. */
  node: z.string().optional(),
});

/**
 * What the admin API shows of a live connection (from its lease); the live counters only for the
 * connections of the node that answers.
 */
export const connectionInfoSchema = z.strictObject({
  id: z.string().uuid(),
  /** The node holding it. */
  node: z.string(),
  sessionId: z.string().uuid().nullable(),
  subject: z.string(),
  channel: z.string(),
  remoteAddress: z.string().nullable(),
  transport: z.literal('ws'),
  since: when,
  framesIn: count.optional(),
  bytesIn: count.optional(),
  lastSeen: when.optional(),
});
export type ConnectionInfo = z.output<typeof connectionInfoSchema>;

export const connectionListSchema = z.strictObject({
  /** The node that answered. */
  node: z.string(),
  items: z.array(connectionInfoSchema),
});

export const kickedSchema = z.strictObject({
  connectionId: z.string().uuid(),
  sessionId: z.string().uuid().nullable(),
  /** The node that held the connection and closed it. */
  node: z.string(),
  kicked: z.literal(true),
});

/** A node of the cluster, from its row in `nodes`. */
export const nodeViewSchema = z.strictObject({
  id: z.string(),
  role: z.string(),
  host: z.string(),
  pid: z.number().int(),
  version: z.string(),
  startedAt: when,
  heartbeatAt: when,
  stoppedAt: when.nullable(),
  /** Heartbeat younger than NODE_DEAD_AFTER_MS and not stopped, by the database's clock. */
  alive: z.boolean(),
});

export const nodeListSchema = z.strictObject({
  /** The node that answered. */
  node: z.string(),
  items: z.array(nodeViewSchema),
});
export type NodeList = z.output<typeof nodeListSchema>;

/** A channel's override: each quota set for it, or null where the env default applies. */
export const quotaOverrideSchema = z.strictObject({
  maxConnections: count.nullable(),
  handshakesPerMin: count.nullable(),
  maxFps: z.number().nullable(),
  maxKbps: z.number().nullable(),
  videoCodecs: channelLimitsSchema.shape.videoCodecs.nullable(),
  maxWidth: z.number().nullable(),
  maxHeight: z.number().nullable(),
});
export type QuotaOverride = z.output<typeof quotaOverrideSchema>;

const storedOverride = quotaOverrideSchema.extend({ updatedAt: when }).nullable();

/** `GET /v1/admin/channels/{channel}/quota`. */
export const channelQuotaViewSchema = z.strictObject({
  channel: z.string(),
  /** What the next handshake of the channel is admitted against. */
  effective: channelLimitsSchema,
  /** The stored override (null: none, every quota is the default). */
  override: storedOverride,
  defaults: channelLimitsSchema,
});
export type ChannelQuotaView = z.output<typeof channelQuotaViewSchema>;

export const channelViewSchema = z.strictObject({
  channel: z.string(),
  /** Live WebSocket connections of the channel on every node (its valid connection leases). */
  connections: count,
  effective: channelLimitsSchema,
  override: storedOverride,
});
export type ChannelView = z.output<typeof channelViewSchema>;

export const channelListSchema = z.strictObject({
  defaults: channelLimitsSchema,
  channels: z.array(channelViewSchema),
});

/** `GET /v1/admin/stats`: what this node carries now and what it can take, and the totals. */
export const nodeStatsSchema = z.strictObject({
  node: z.string(),
  connections: count,
  /** Live connections of this node per channel (channels with none are omitted). */
  connectionsByChannel: z.record(z.string(), count),
  /** Live connections of every node (valid connection leases), in total and per channel. */
  cluster: z.strictObject({
    connections: count,
    connectionsByChannel: z.record(z.string(), count),
  }),
  /** Connection slots held against QUOTA_NODE_MAX_CONNECTIONS, and per channel. */
  slots: z.strictObject({ node: count, max: count, channels: z.record(z.string(), count) }),
  /** This node's live sessions. */
  sessions: z.strictObject({ live: count, attached: count, interrupted: count }),
  /** Every session in the database (all nodes) by status. */
  sessionsByStatus: z.record(z.string(), count),
  /** Every recording in the database by status: how many and their bytes. */
  recordingsByStatus: z.record(z.string(), z.strictObject({ count, bytes: count })),
  encoders: z.strictObject({ active: count, waiting: count, max: count, backlogFrames: count }),
  /**
   * What waits: frames stored in spools but not yet encoded (`spool`: by recorders reading from
   * the spool, behind or waiting for a slot), sessions waiting for an encoder slot, and audit
   * records not yet in Postgres (buffered or journaled).
   */
  backlogs: z.strictObject({
    spool: z.strictObject({ sessions: count, frames: count }),
    encoder: z.strictObject({ waitingSessions: count, frames: count }),
    audit: z.strictObject({ records: count }),
  }),
  capacity: capacityStatsSchema,
});
export type NodeStats = z.output<typeof nodeStatsSchema>;
