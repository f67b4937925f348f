import {
  type BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleInit,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type PgBoss from 'pg-boss';
import type { DataSource, EntityManager } from 'typeorm';
import { z } from 'zod';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { parseOrThrow } from '../common/zod-body.pipe';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { PACKAGE_VERSION } from '../docs/version';
import { NodeMetrics } from '../metrics/node-metrics.service';
import { JobQueue } from '../queue/job-queue.service';
import type { AttemptOutcome } from './webhook-attempt.entity';
import type { WebhookState } from './webhook-delivery.entity';
import type { SendResult } from './webhook-sender';
import { WebhookSender } from './webhook-sender';
import { signatureHeader, WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER } from './webhook-signature';
import {
  systemLookup,
  validateWebhookUrl,
  webhookSpecSchema,
  webhookUrlPolicy,
  type WebhookUrlPolicy,
} from './webhook-url';

/** The pg-boss queue of delivery attempts; a job's id is its delivery's id. */
export const DELIVERY_QUEUE = 'webhook-delivery';
/** Where pg-boss puts a delivery whose last attempt never finished (its node died during it). */
export const GAVE_UP_QUEUE = 'webhook-delivery-gave-up';
/** Largest `data` of a webhook body, as JSON. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;
/**
 * How often an idle worker looks for due retries (pg-boss' default). A new delivery does not
 * wait for it: enqueue wakes a worker.
 */
const POLLING_INTERVAL_S = 2;
/** An attempt holds its job at most its timeout plus this (database writes) before pg-boss retries it. */
const EXPIRY_MARGIN_S = 60;

export const USER_AGENT = `framegate-webhooks/${PACKAGE_VERSION}`;

/** What a caller (the jobs API) asks to deliver. */
export interface WebhookRequest {
  /** Deliveries are unique by this id (e.g. `<jobId>:completed`): enqueueing it again is a no-op. */
  idempotencyId: string;
  url: string;
  secret: string;
  /** e.g. `job.completed`. */
  event: string;
  /** The body's `data`: a JSON object, no secrets. */
  payload: object;
  /** Whose webhook it is (the job owner's subject). */
  subject: string;
}

const webhookRequestSchema = z.strictObject({
  // Sent in a header and compared by receivers: visible ASCII only.
  idempotencyId: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[\x21-\x7e]+$/, 'must be visible ASCII'),
  url: webhookSpecSchema.shape.url,
  secret: webhookSpecSchema.shape.secret,
  event: z.string().regex(/^[a-z][a-z0-9_.-]{0,63}$/, 'must be like job.completed'),
  payload: z.record(z.string(), z.unknown()),
  // A verified token's `sub`: no limit of ours (the token's own size bounds it).
  subject: z.string().min(1),
});

interface DeliveryJob {
  deliveryId: string;
}

/** What one attempt did to its delivery, and whether pg-boss must retry it. */
export interface Verdict {
  outcome: AttemptOutcome;
  retry: boolean;
}

/**
 * 2xx delivers; another 4xx (but 408 and 429, which ask to come back) is the receiver refusing
 * the webhook, so it is not sent again; a blocked destination is not either. Everything else
 * (5xx, 3xx: redirects are not followed, no answer) is retried.
 */
export function judge(result: SendResult): Verdict {
  switch (result.kind) {
    case 'response': {
      const s = result.status;
      if (s >= 200 && s < 300) {
        return { outcome: 'delivered', retry: false };
      }
      if (s >= 400 && s < 500 && s !== 408 && s !== 429) {
        return { outcome: 'rejected', retry: false };
      }
      return { outcome: 'failed', retry: true };
    }
    case 'blocked':
      return { outcome: 'blocked', retry: false };
    case 'error':
      return { outcome: 'failed', retry: true };
  }
}

/** The columns of a pending delivery an attempt needs. */
interface DeliveryToAttempt {
  idempotency_id: string;
  event: string;
  url: string;
  payload: Record<string, unknown>;
  secret: string;
  attempts: number;
  created_at: Date;
}

interface StartedAttempt {
  attemptId: string;
  attempt: number;
  url: string;
  secret: string;
  body: string;
  idempotencyId: string;
}

/** A retryable attempt's failure: thrown to pg-boss, which schedules the retry with backoff. */
class RetryLater extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RetryLater';
  }
}

/** pg-boss running its statements in a TypeORM transaction, so a job and its row commit together. */
function inTransaction(em: EntityManager): PgBoss.Db {
  return {
    executeSql: async (text, values) => ({
      rows: (await em.queryRunner!.query(text, values, true)).records as unknown[],
    }),
  };
}

/**
 * Signed webhooks with durable retries. `enqueue` stores a delivery (once per idempotency id)
 * and its pg-boss job in one transaction; workers make each attempt, audit it in
 * webhook_attempts (a row when it starts, completed when it ends) and leave retries with
 * exponential backoff to pg-boss, bounded by WEBHOOK_RETRY_LIMIT and WEBHOOK_RETRY_DELAY_SECONDS.
 */
@Injectable()
export class WebhookService
  implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown
{
  private readonly logger = new Logger('WebhookService');
  private readonly workers: string[] = [];
  private nextWorker = 0;
  /** Attempts under way, so a stopping node can abort them and wait for their audit. */
  private readonly running = new Map<AbortController, Promise<unknown>>();
  private stopping = false;
  private readonly policy: WebhookUrlPolicy;

  constructor(
    @InjectDataSource() private readonly db: DataSource,
    private readonly queue: JobQueue,
    private readonly metrics: NodeMetrics,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly sender: WebhookSender,
  ) {
    this.policy = webhookUrlPolicy(config);
  }

  /**
   * The queues exist before any module's bootstrap can enqueue (creating one needs only the
   * database; it is a no-op when it exists).
   */
  async onModuleInit(): Promise<void> {
    await this.queue.createQueue(GAVE_UP_QUEUE);
    await this.queue.createQueue(DELIVERY_QUEUE, {
      name: DELIVERY_QUEUE,
      deadLetter: GAVE_UP_QUEUE,
    });
  }

  /** Workers once JobQueue started pg-boss (a global module: its hooks run first). */
  onApplicationBootstrap(): void {
    for (let i = 0; i < this.config.WEBHOOK_CONCURRENCY; i++) {
      this.workers.push(
        this.queue.work<DeliveryJob>(
          DELIVERY_QUEUE,
          { pollingIntervalSeconds: POLLING_INTERVAL_S },
          (job) => this.attempt(job),
        ),
      );
    }
    this.queue.work<DeliveryJob>(
      GAVE_UP_QUEUE,
      { pollingIntervalSeconds: POLLING_INTERVAL_S },
      (job) => this.giveUp(job.data.deliveryId),
    );
  }

  /**
   * Stops taking attempts and aborts those under way (each is audited as failed and retried
   * later, possibly by another node), so the queue's own graceful stop finds nothing running.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopping = true;
    const stopped = Promise.all([
      this.queue.offWork(DELIVERY_QUEUE),
      this.queue.offWork(GAVE_UP_QUEUE),
    ]);
    for (const controller of this.running.keys()) {
      controller.abort('the node is shutting down');
    }
    await Promise.allSettled(this.running.values());
    await stopped;
  }

  /**
   * Checks a webhook URL against this node's policy (WEBHOOK_ALLOW_HTTP, WEBHOOK_ALLOW_PRIVATE,
   * the resolved addresses): throws `validation_failed` (400) naming `field`. The jobs API calls
   * it at submission.
   */
  validateUrl(url: string, field = 'webhook.url'): Promise<void> {
    return validateWebhookUrl(url, this.policy, systemLookup, field);
  }

  /**
   * Schedules a delivery; returns once it is durable. The same idempotencyId again is a no-op
   * (the first one's url, secret and payload stand), so a caller retried after a crash can
   * simply call it again. Throws `validation_failed` for a malformed request or a refused URL.
   */
  async enqueue(d: WebhookRequest): Promise<void> {
    const r = parseOrThrow(webhookRequestSchema, d, 'webhook');
    const payload = JSON.stringify(r.payload);
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) {
      throw new AppError(
        ErrorCode.ValidationFailed,
        `webhook: payload is larger than ${MAX_PAYLOAD_BYTES} bytes as JSON`,
        { fields: [{ field: 'payload', problem: `at most ${MAX_PAYLOAD_BYTES} bytes as JSON` }] },
      );
    }
    const known: unknown[] = await this.db.query(
      `SELECT 1 FROM webhook_deliveries WHERE idempotency_id = $1`,
      [r.idempotencyId],
    );
    if (known.length > 0) {
      return;
    }
    await this.validateUrl(r.url);
    const id = randomUUID();
    const created = await this.db.transaction(async (em) => {
      // A concurrent enqueue of the same id waits here for the first to commit, then inserts nothing.
      const rows: unknown[] = await em.query(
        `INSERT INTO webhook_deliveries
           (id, idempotency_id, subject, event, url, payload, secret, state, attempts, created_at)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, 'pending', 0, $8)
         ON CONFLICT (idempotency_id) DO NOTHING
         RETURNING id`,
        [id, r.idempotencyId, r.subject, r.event, r.url, payload, r.secret, new Date()],
      );
      if (rows.length === 0) {
        return false;
      }
      await this.queue.boss.send(DELIVERY_QUEUE, { deliveryId: id } satisfies DeliveryJob, {
        id,
        retryLimit: this.config.WEBHOOK_RETRY_LIMIT,
        retryDelay: this.config.WEBHOOK_RETRY_DELAY_SECONDS,
        retryBackoff: true,
        expireInSeconds: Math.ceil(this.config.WEBHOOK_TIMEOUT_MS / 1000) + EXPIRY_MARGIN_S,
        deadLetter: GAVE_UP_QUEUE,
        db: inTransaction(em),
      });
      return true;
    });
    if (created) {
      this.logger.debug({ deliveryId: id, event: r.event }, 'webhook enqueued');
      this.wakeWorker();
    }
  }

  /** The first attempt need not wait for a worker's next poll. */
  private wakeWorker(): void {
    const worker = this.workers[this.nextWorker++ % Math.max(this.workers.length, 1)];
    if (worker !== undefined && !this.stopping) {
      this.queue.notify(worker);
    }
  }

  /** One attempt of one delivery (a pg-boss job); throws RetryLater for pg-boss to retry it. */
  private attempt(job: PgBoss.JobWithMetadata<DeliveryJob>): Promise<unknown> {
    const controller = new AbortController();
    if (this.stopping) {
      controller.abort('the node is shutting down');
    }
    const last = job.retryCount >= job.retryLimit;
    const work = this.runAttempt(job.data.deliveryId, last, controller.signal).finally(() =>
      this.running.delete(controller),
    );
    this.running.set(controller, work);
    return work;
  }

  private async runAttempt(
    deliveryId: string,
    last: boolean,
    signal: AbortSignal,
  ): Promise<{ outcome: AttemptOutcome } | { skipped: string }> {
    const at = new Date();
    const started = await this.beginAttempt(deliveryId, at);
    if (!started) {
      // Delivered or given up already: pg-boss ran the job again after a crash or an expiry.
      return { skipped: 'the delivery is final already' };
    }
    const t0 = performance.now();
    const result = await this.sender.send(
      {
        url: started.url,
        body: started.body,
        headers: {
          'Content-Type': 'application/json',
          'User-Agent': USER_AGENT,
          [WEBHOOK_ID_HEADER]: started.idempotencyId,
          [WEBHOOK_SIGNATURE_HEADER]: signatureHeader(
            started.secret,
            started.body,
            Math.floor(Date.now() / 1000),
          ),
        },
      },
      signal,
    );
    const durationMs = Math.round(performance.now() - t0);
    const verdict = judge(result);
    const state: WebhookState =
      verdict.outcome === 'delivered'
        ? 'delivered'
        : verdict.retry && !last
          ? 'pending'
          : 'gave_up';
    await this.finishAttempt(deliveryId, started.attemptId, result, verdict, durationMs, state);
    this.metrics.webhookAttempts.inc([verdict.outcome]);
    const detail = result.kind === 'response' ? `HTTP ${result.status}` : result.error;
    const origin = new URL(started.url).origin;
    if (state === 'gave_up') {
      this.logger.warn(
        { deliveryId, attempt: started.attempt, origin, outcome: verdict.outcome, detail },
        'webhook delivery gave up',
      );
    } else {
      this.logger.debug(
        { deliveryId, attempt: started.attempt, origin, outcome: verdict.outcome, detail },
        'webhook attempt',
      );
    }
    if (state === 'pending') {
      throw new RetryLater(`attempt ${started.attempt} failed (${detail}); retrying`);
    }
    return { outcome: verdict.outcome };
  }

  /**
   * Counts the attempt on its delivery and writes its audit row, in one transaction; null when
   * the delivery is no longer pending. Earlier attempts left without an outcome were cut short
   * by their node stopping: they are marked `interrupted`.
   */
  private async beginAttempt(deliveryId: string, at: Date): Promise<StartedAttempt | null> {
    return this.db.transaction(async (em) => {
      // For UPDATE … RETURNING, TypeORM's postgres driver answers [rows, affected count].
      const [rows] = await em.query<[DeliveryToAttempt[], number]>(
        `UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = $2
          WHERE id = $1 AND state = 'pending'
          RETURNING idempotency_id, event, url, payload, secret, attempts, created_at`,
        [deliveryId, at],
      );
      const d = rows[0];
      if (!d) {
        return null;
      }
      await markInterrupted(em, deliveryId);
      const attemptId = randomUUID();
      await em.query(
        `INSERT INTO webhook_attempts (id, delivery_id, attempt, at, node) VALUES ($1, $2, $3, $4, $5)`,
        [attemptId, deliveryId, d.attempts, at, this.config.NODE_ID],
      );
      return {
        attemptId,
        attempt: d.attempts,
        url: d.url,
        secret: d.secret,
        idempotencyId: d.idempotency_id,
        // Built from the stored row, so every attempt sends the same bytes.
        body: JSON.stringify({
          id: d.idempotency_id,
          event: d.event,
          createdAt: d.created_at.toISOString(),
          data: d.payload,
        }),
      };
    });
  }

  private async finishAttempt(
    deliveryId: string,
    attemptId: string,
    result: SendResult,
    verdict: Verdict,
    durationMs: number,
    state: WebhookState,
  ): Promise<void> {
    await this.db.transaction(async (em) => {
      await em.query(
        `UPDATE webhook_attempts
            SET outcome = $2, duration_ms = $3, status_code = $4, error = $5, response_excerpt = $6
          WHERE id = $1`,
        [
          attemptId,
          verdict.outcome,
          durationMs,
          result.kind === 'response' ? result.status : null,
          result.kind === 'response' ? null : result.error,
          result.kind === 'response' ? result.excerpt : null,
        ],
      );
      if (state !== 'pending') {
        // Final: the secret was kept only to sign retries.
        await em.query(
          `UPDATE webhook_deliveries
              SET state = $2, delivered_at = $3, secret = NULL
            WHERE id = $1 AND state = 'pending'`,
          [deliveryId, state, state === 'delivered' ? new Date() : null],
        );
      }
    });
  }

  /** The last attempt never finished (pg-boss failed its job by expiry): the delivery is over. */
  private async giveUp(deliveryId: string): Promise<void> {
    const changed = await this.db.transaction(async (em) => {
      const [rows] = await em.query<[unknown[], number]>(
        `UPDATE webhook_deliveries SET state = 'gave_up', secret = NULL
          WHERE id = $1 AND state = 'pending' RETURNING id`,
        [deliveryId],
      );
      await markInterrupted(em, deliveryId);
      return rows.length > 0;
    });
    if (changed) {
      this.logger.warn({ deliveryId }, 'webhook delivery gave up: its last attempt never finished');
    }
  }
}

async function markInterrupted(em: EntityManager, deliveryId: string): Promise<void> {
  await em.query(
    `UPDATE webhook_attempts SET outcome = 'interrupted', error = 'the node stopped during the attempt'
      WHERE delivery_id = $1 AND outcome IS NULL`,
    [deliveryId],
  );
}
