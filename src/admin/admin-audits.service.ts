import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import type { AuditOutcome, Transport } from '../audit/audit.types';
import { CURSOR_TIME_SQL, type Cursor, type Page, pageOf, SqlWhere } from './admin-query';
import type { AuditView } from './admin-api.schema';
export type { AuditView } from './admin-api.schema';

/** What an audit search filters by (validated by the controller). */
export interface AuditFilter {
  outcome?: AuditOutcome;
  closeReason?: string;
  channel?: string;
  subject?: string;
  remoteAddress?: string;
  sessionId?: string;
  transport?: Transport;
  from?: Date;
  to?: Date;
  cursor?: Cursor;
  limit: number;
}

/** The columns of a connection_audits row as the admin API reads them. */
export const AUDIT_COLUMNS = `id, at, last_at, count, node, transport, remote_address, user_agent,
  origin, subject, channel, outcome, error, session_id, closed_at, close_code, close_reason,
  closed_by, duration_ms, bytes_in, bytes_out, frames_in, frames_out,
  ${CURSOR_TIME_SQL('at')} AS cursor_at`;

export interface AuditRow {
  id: string;
  at: Date;
  last_at: Date | null;
  count: number;
  node: string;
  transport: Transport;
  remote_address: string | null;
  user_agent: string | null;
  origin: string | null;
  subject: string | null;
  channel: string | null;
  outcome: AuditOutcome;
  error: string | null;
  session_id: string | null;
  closed_at: Date | null;
  close_code: number | null;
  close_reason: string | null;
  closed_by: string | null;
  duration_ms: string | null;
  bytes_in: string | null;
  bytes_out: string | null;
  frames_in: string | null;
  frames_out: string | null;
  cursor_at: string;
}

/** One connection audit: a handshake, its outcome and how it ended (`close` once closed). */
export function auditOf(r: AuditRow): AuditView {
  const num = (v: string | null): number | null => (v === null ? null : Number(v));
  return {
    id: r.id,
    at: r.at.toISOString(),
    /** Repeated refusals share a row: `count` of them, the last at `lastAt`. */
    count: r.count,
    lastAt: r.last_at?.toISOString() ?? null,
    node: r.node,
    transport: r.transport,
    remoteAddress: r.remote_address,
    userAgent: r.user_agent,
    origin: r.origin,
    subject: r.subject,
    channel: r.channel,
    outcome: r.outcome,
    error: r.error,
    sessionId: r.session_id,
    close:
      r.closed_at === null
        ? null
        : {
            closedAt: r.closed_at.toISOString(),
            closeCode: r.close_code,
            closeReason: r.close_reason,
            closedBy: r.closed_by,
            durationMs: num(r.duration_ms),
            bytesIn: num(r.bytes_in),
            bytesOut: num(r.bytes_out),
            framesIn: num(r.frames_in),
            framesOut: num(r.frames_out),
          },
  };
}

@Injectable()
export class AdminAuditsService {
  constructor(@InjectDataSource() private readonly db: DataSource) {}

  /** Connection audits newest first (by handshake time), filtered. */
  async search(filter: AuditFilter): Promise<Page<AuditView>> {
    const where = new SqlWhere();
    where.equals('outcome', filter.outcome);
    where.equals('close_reason', filter.closeReason);
    where.equals('channel', filter.channel);
    where.equals('subject', filter.subject);
    where.equals('remote_address', filter.remoteAddress);
    where.equals('session_id', filter.sessionId);
    where.equals('transport', filter.transport);
    where.range('at', filter.from, filter.to);
    where.after('at', filter.cursor);
    const rows: AuditRow[] = await this.db.query(
      `SELECT ${AUDIT_COLUMNS} FROM connection_audits ${where.sql()}
        ORDER BY at DESC, id DESC LIMIT ${filter.limit + 1}`,
      where.params,
    );
    return pageOf(rows, filter.limit, auditOf, (r) => ({ at: r.cursor_at, id: r.id }));
  }
}
