import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { CURSOR_TIME_SQL, type Cursor, type Page, pageOf, SqlWhere } from '../admin/admin-query';
import type { WebhookAttemptView, WebhookDeliveryView } from './webhook-api.schema';
import type { AttemptOutcome } from './webhook-attempt.entity';
import type { WebhookState } from './webhook-delivery.entity';

/** What the admin list filters by (validated by the controller). */
export interface WebhookFilter {
  state?: WebhookState;
  event?: string;
  subject?: string;
  idempotencyId?: string;
  from?: Date;
  to?: Date;
  cursor?: Cursor;
  limit: number;
}

interface DeliveryRow {
  id: string;
  idempotency_id: string;
  subject: string;
  event: string;
  url: string;
  state: WebhookState;
  created_at: Date;
  last_attempt_at: Date | null;
  delivered_at: Date | null;
  cursor_at: string;
}

interface AttemptRow {
  delivery_id: string;
  attempt: number;
  at: Date;
  node: string;
  outcome: AttemptOutcome | null;
  duration_ms: number | null;
  status_code: number | null;
  error: string | null;
  response_excerpt: string | null;
}

@Injectable()
export class WebhooksAdminService {
  constructor(@InjectDataSource() private readonly db: DataSource) {}

  /** Deliveries newest first, each with its attempts in order. */
  async list(filter: WebhookFilter): Promise<Page<WebhookDeliveryView>> {
    const where = new SqlWhere();
    where.equals('state', filter.state);
    where.equals('event', filter.event);
    where.equals('subject', filter.subject);
    where.equals('idempotency_id', filter.idempotencyId);
    where.range('created_at', filter.from, filter.to);
    where.after('created_at', filter.cursor);
    const rows: DeliveryRow[] = await this.db.query(
      `SELECT id, idempotency_id, subject, event, url, state, created_at, last_attempt_at,
              delivered_at, ${CURSOR_TIME_SQL('created_at')} AS cursor_at
         FROM webhook_deliveries ${where.sql()}
        ORDER BY created_at DESC, id DESC LIMIT ${filter.limit + 1}`,
      where.params,
    );
    const attempts = new Map<string, WebhookAttemptView[]>();
    const ids = rows.slice(0, filter.limit).map((r) => r.id);
    if (ids.length > 0) {
      const attemptRows: AttemptRow[] = await this.db.query(
        `SELECT delivery_id, attempt, at, node, outcome, duration_ms, status_code, error,
                response_excerpt
           FROM webhook_attempts WHERE delivery_id = ANY($1::uuid[])
          ORDER BY delivery_id, attempt`,
        [ids],
      );
      for (const a of attemptRows) {
        const list = attempts.get(a.delivery_id) ?? [];
        list.push({
          attempt: a.attempt,
          at: a.at.toISOString(),
          node: a.node,
          outcome: a.outcome,
          durationMs: a.duration_ms,
          statusCode: a.status_code,
          error: a.error,
          responseExcerpt: a.response_excerpt,
        });
        attempts.set(a.delivery_id, list);
      }
    }
    return pageOf(
      rows,
      filter.limit,
      (r) => ({
        id: r.id,
        idempotencyId: r.idempotency_id,
        subject: r.subject,
        event: r.event,
        url: r.url,
        state: r.state,
        createdAt: r.created_at.toISOString(),
        lastAttemptAt: r.last_attempt_at?.toISOString() ?? null,
        deliveredAt: r.delivered_at?.toISOString() ?? null,
        attempts: attempts.get(r.id) ?? [],
      }),
      (r) => ({ at: r.cursor_at, id: r.id }),
    );
  }
}
