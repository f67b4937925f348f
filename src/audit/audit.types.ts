/** Handshake outcomes (spec section 8). */
export const AUDIT_OUTCOMES = [
  'accepted',
  'rejected_auth',
  'rejected_origin',
  'rejected_quota',
  'rejected_draining',
  'rejected_protocol',
  /** The database (or another dependency of the check) was unavailable: 503, retry later. */
  'rejected_unavailable',
] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

export type Transport = 'ws' | 'http';

/** How a connection ended; present once the connection has closed. */
export interface ConnectionClose {
  closedAt: Date;
  closeCode: number;
  closeReason: string;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
  /** The admin's subject when an administrator closed the connection (`kicked`). */
  closedBy?: string | null;
}

/**
 * One connection audit. The handshake records it without `close`; the close records it again, in
 * full, with `close`. Both are upserts on `id`, so they land correctly in either order and a
 * replayed record never duplicates a row.
 */
export interface ConnectionAuditRecord {
  kind: 'connection';
  /** A UUID chosen when the connection is first seen. */
  id: string;
  at: Date;
  node: string;
  transport: Transport;
  remoteAddress: string | null;
  userAgent: string | null;
  origin: string | null;
  subject: string | null;
  channel: string | null;
  outcome: AuditOutcome;
  /** The error code of a rejection. */
  error: string | null;
  sessionId: string | null;
  close?: ConnectionClose;
  /**
   * Refusals this row stands for, set by the writer when it aggregates repeated refusals (see
   * RefusalAggregator); absent means one. Callers never set it.
   */
  count?: number;
  /** The latest of the `count` refusals; `at` is the first. */
  lastAt?: Date;
}

/** Something that happened to a session (attach, detach, resume, kick, ...). */
export interface SessionEventRecord {
  kind: 'session_event';
  id: string;
  sessionId: string;
  at: Date;
  type: string;
  connectionId: string | null;
  detail: Record<string, unknown>;
}

/** Something that happened to the node itself, e.g. its embedded database died and came back. */
export interface NodeEventRecord {
  kind: 'node_event';
  id: string;
  at: Date;
  node: string;
  type: NodeEventType;
  detail: Record<string, unknown>;
}

/** `database_down`: the embedded postmaster exited; `database_up`: it runs again. */
export type NodeEventType = 'database_down' | 'database_up';

/** `kick`: a connection closed with 4003; `quota_set`: a channel's quota override replaced. */
export type AdminActionType = 'kick' | 'quota_set';

/** Something an administrator did through the admin API, with the admin's subject. */
export interface AdminActionRecord {
  kind: 'admin_action';
  id: string;
  at: Date;
  node: string;
  subject: string;
  action: AdminActionType;
  target: string;
  detail: Record<string, unknown>;
}

export type AuditRecord =
  | ConnectionAuditRecord
  | SessionEventRecord
  | NodeEventRecord
  | AdminActionRecord;
