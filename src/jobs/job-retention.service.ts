import {
  Inject,
  Injectable,
  Logger,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Pool } from 'pg';
import type { DataSource } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { QUEUE_SCHEMA } from '../queue/job-queue.service';
import { JobNotifier } from './job-notifier.service';
import { JobPaths } from './job-paths';
import { inTransaction, MEDIA_JOB_QUEUE, poolOf, recordJobEvent } from './media-job-queue';

/** Jobs whose files are removed per query. */
const BATCH_SIZE = 100;
/**
 * A folder under DATA_DIR/jobs with no row this long after it was last touched: an upload cut off
 * by a crash (a live upload is younger: no request lasts longer than HTTP_REQUEST_TIMEOUT_MS, 1 h).
 */
const ORPHAN_AGE_MS = 2 * 3_600_000;

export interface JobRetentionResult {
  /** Finished jobs whose folders were removed (their rows stay, `outputs_expired_at` set). */
  expired: number;
  /** Folders of no job removed. */
  orphans: number;
  /** Queued jobs failed because pg-boss dropped them unrun. */
  lost: number;
}

/**
 * Retention of media jobs, every RETENTION_SWEEP_MS: the folder (inputs and outputs) of a job
 * that ended more than MEDIA_JOB_RETENTION_HOURS ago is removed and its row kept as the record
 * (`outputs_expired_at`, an `expired` event). Also removes folders no row owns (an upload the node
 * crashed during) and fails queued jobs pg-boss no longer has (it drops a job left waiting longer
 * than its queue retention, the same number of hours). pg-boss's own rows are archived and deleted
 * by pg-boss (docs/media-jobs.md).
 */
@Injectable()
export class JobRetention implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('JobRetention');
  private readonly pool: Pool;
  private timer: NodeJS.Timeout | undefined;
  /** The sweep running now, if any: sweeps of one process never overlap. */
  private running: Promise<JobRetentionResult> | null = null;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectDataSource() dataSource: DataSource,
    private readonly paths: JobPaths,
    private readonly notifier: JobNotifier,
  ) {
    this.pool = poolOf(dataSource);
  }

  onModuleInit(): void {
    this.timer = setInterval(() => {
      if (!this.running) {
        this.sweepNow().catch((err: unknown) =>
          this.logger.warn({ err }, 'media job retention sweep failed; retrying on the next one'),
        );
      }
    }, this.config.RETENTION_SWEEP_MS);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** One sweep now (after the one in progress, if any). */
  async sweepNow(): Promise<JobRetentionResult> {
    while (this.running) {
      await this.running.catch(() => undefined);
    }
    const run = this.sweep();
    this.running = run;
    try {
      return await run;
    } finally {
      this.running = null;
    }
  }

  private async sweep(): Promise<JobRetentionResult> {
    const expired = await this.expireFinished();
    const lost = await this.failLost();
    const orphans = await this.removeOrphans();
    // Webhooks of jobs whose hand-over failed (the webhooks service refused or was unreachable).
    await this.notifier.catchUp();
    if (expired + lost + orphans > 0) {
      this.logger.log({ expired, lost, orphans }, 'media job retention sweep done');
    }
    return { expired, orphans, lost };
  }

  /**
   * This node's finished jobs past retention (a job that never ran has its inputs here too, where
   * it was submitted: one node for now, see docs/media-jobs.md).
   */
  private async expireFinished(): Promise<number> {
    let expired = 0;
    for (;;) {
      const { rows } = await this.pool.query<{ id: string; state: string }>(
        `SELECT id, state FROM media_jobs
          WHERE state IN ('completed', 'failed', 'cancelled') AND outputs_expired_at IS NULL
            AND finished_at < now() - make_interval(hours => $1)
            AND (node = $2 OR node IS NULL)
          ORDER BY finished_at, id LIMIT ${BATCH_SIZE}`,
        [this.config.MEDIA_JOB_RETENTION_HOURS, this.config.NODE_ID],
      );
      for (const row of rows) {
        await rm(this.paths.job(row.id), { recursive: true, force: true });
        await inTransaction(this.pool, async (client) => {
          await client.query(
            `UPDATE media_jobs SET outputs_expired_at = now(), updated_at = now() WHERE id = $1`,
            [row.id],
          );
          await recordJobEvent(client, {
            jobId: row.id,
            type: 'expired',
            node: this.config.NODE_ID,
            detail: { retentionHours: this.config.MEDIA_JOB_RETENTION_HOURS },
          });
        });
        this.logger.log(
          { jobId: row.id, state: row.state },
          'media job files removed by retention',
        );
      }
      expired += rows.length;
      if (rows.length < BATCH_SIZE) {
        return expired;
      }
    }
  }

  /** Queued jobs whose pg-boss job is gone or settled without them: they will never run. */
  private async failLost(): Promise<number> {
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT m.id FROM media_jobs m
        WHERE m.state = 'queued' AND m.created_at < now() - make_interval(hours => $1)
          AND NOT EXISTS (
            SELECT 1 FROM ${QUEUE_SCHEMA}.job b
             WHERE b.name = $2 AND b.id = m.id AND b.state IN ('created', 'retry', 'active'))
        LIMIT ${BATCH_SIZE}`,
      [this.config.MEDIA_JOB_RETENTION_HOURS, MEDIA_JOB_QUEUE],
    );
    for (const row of rows) {
      await inTransaction(this.pool, async (client) => {
        const message = `the job waited longer than MEDIA_JOB_RETENTION_HOURS (${this.config.MEDIA_JOB_RETENTION_HOURS} h) and was dropped from the queue`;
        const updated = await client.query(
          `UPDATE media_jobs SET state = 'failed', error = $2, finished_at = now(),
                  updated_at = now()
            WHERE id = $1 AND state = 'queued'`,
          [row.id, message],
        );
        if (updated.rowCount) {
          await recordJobEvent(client, {
            jobId: row.id,
            type: 'failed',
            node: this.config.NODE_ID,
            detail: { error: message },
          });
        }
      });
      await this.notifier.notifyFinal(row.id);
    }
    return rows.length;
  }

  /** Folders under DATA_DIR/jobs that no row owns, untouched for ORPHAN_AGE_MS. */
  private async removeOrphans(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.paths.root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return 0;
      }
      throw err;
    }
    const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    const candidates = names.filter((n) => UUID.test(n));
    if (candidates.length === 0) {
      return 0;
    }
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT id FROM media_jobs WHERE id = ANY($1::uuid[])`,
      [candidates],
    );
    const owned = new Set(rows.map((r) => r.id));
    let removed = 0;
    for (const name of candidates.filter((n) => !owned.has(n))) {
      const dir = join(this.paths.root, name);
      const { mtimeMs } = await stat(dir);
      if (Date.now() - mtimeMs > ORPHAN_AGE_MS) {
        await rm(dir, { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }
}
