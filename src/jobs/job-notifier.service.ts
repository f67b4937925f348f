import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import type { Pool } from 'pg';
import { type DataSource, In, IsNull, Not, type Repository } from 'typeorm';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { MAX_PAYLOAD_BYTES, WebhookService } from '../webhooks/webhook.service';
import { jobSummaryOf } from './job-view';
import type { JobSummary } from './jobs-api.schema';
import { MediaJobEntity } from './media-job.entity';
import { inTransaction, poolOf, recordJobEvent } from './media-job-queue';

/** Jobs whose webhook is handed over per catch-up query. */
const CATCH_UP_BATCH = 100;

/**
 * Reports a job's end to its webhook: `job.completed` or `job.failed`, idempotency id
 * `<jobId>:<state>`, the job's record as the payload. The row's `webhook_enqueued_at` is set (its
 * copy of the secret erased, a `webhook_enqueued` event recorded) once the webhooks service holds
 * the delivery durably, or refused it for good (`webhook_refused`, with the reason). Until then
 * `catchUp` (at start and with each retention sweep) hands it over again, so a crash between a
 * job's end and the hand-over loses nothing, and a hand-over repeated after one is a no-op (the
 * webhooks service keeps one delivery per idempotency id).
 */
@Injectable()
export class JobNotifier {
  private readonly logger = new Logger('JobNotifier');
  private readonly pool: Pool;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectDataSource() dataSource: DataSource,
    @InjectRepository(MediaJobEntity) private readonly jobs: Repository<MediaJobEntity>,
    private readonly webhooks: WebhookService,
  ) {
    this.pool = poolOf(dataSource);
  }

  /** Hands a finished job's webhook over; a failure is logged and left to `catchUp`. */
  async notifyFinal(jobId: string): Promise<void> {
    try {
      const job = await this.jobs.findOneBy({ id: jobId });
      if (job) {
        await this.handOver(job);
      }
    } catch (err) {
      this.logger.warn(
        { err: err instanceof Error ? err.message : String(err), jobId },
        'job webhook not handed over yet; retried with the next catch-up',
      );
    }
  }

  /** Every finished job whose webhook was not handed over yet. */
  async catchUp(): Promise<number> {
    let handed = 0;
    for (;;) {
      const pending = await this.jobs.find({
        where: {
          state: In(['completed', 'failed']),
          webhookUrl: Not(IsNull()),
          webhookEnqueuedAt: IsNull(),
        },
        order: { finishedAt: 'ASC', id: 'ASC' },
        take: CATCH_UP_BATCH,
      });
      for (const job of pending) {
        await this.handOver(job);
        handed++;
      }
      if (pending.length < CATCH_UP_BATCH) {
        return handed;
      }
    }
  }

  private async handOver(job: MediaJobEntity): Promise<void> {
    if (
      (job.state !== 'completed' && job.state !== 'failed') ||
      !job.webhookUrl ||
      !job.webhookSecret ||
      job.webhookEnqueuedAt
    ) {
      return;
    }
    try {
      await this.webhooks.enqueue({
        idempotencyId: `${job.id}:${job.state}`,
        url: job.webhookUrl,
        secret: job.webhookSecret,
        event: `job.${job.state}`,
        payload: this.payloadOf(job),
        subject: job.subject,
      });
    } catch (err) {
      if (!(err instanceof AppError && err.code === ErrorCode.ValidationFailed)) {
        throw err;
      }
      // Refused for good (the URL's host now resolves to a refused address, say): asking again
      // at every sweep would not change that. The job's events say why no webhook came.
      await this.settle(job, 'webhook_refused', { reason: err.message });
      this.logger.warn({ jobId: job.id, reason: err.message }, 'job webhook refused');
      return;
    }
    await this.settle(job, 'webhook_enqueued', { idempotencyId: `${job.id}:${job.state}` });
    this.logger.log({ jobId: job.id, state: job.state }, 'job webhook handed over');
  }

  /** Marks the hand-over done, with an event, and erases the job's copy of the secret. */
  private async settle(
    job: MediaJobEntity,
    type: string,
    detail: Record<string, unknown>,
  ): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      await client.query(
        `UPDATE media_jobs SET webhook_enqueued_at = now(), webhook_secret = NULL
          WHERE id = $1`,
        [job.id],
      );
      await recordJobEvent(client, { jobId: job.id, type, node: this.config.NODE_ID, detail });
    });
  }

  /**
   * The job's record (as `GET /v1/media/jobs/{id}` has it, without the events). A record too
   * large for a webhook (hundreds of thumbnails) goes without the outputs' ffprobe facts, which
   * the receiver can read from the API.
   */
  private payloadOf(job: MediaJobEntity): JobSummary {
    const record = jobSummaryOf(job, this.config.MEDIA_JOB_RETENTION_HOURS);
    if (Buffer.byteLength(JSON.stringify(record)) <= MAX_PAYLOAD_BYTES) {
      return record;
    }
    return { ...record, outputs: record.outputs.map((o) => ({ ...o, probe: null })) };
  }
}
