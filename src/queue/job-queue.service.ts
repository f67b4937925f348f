import {
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type BeforeApplicationShutdown,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import PgBoss from 'pg-boss';
import type { Pool } from 'pg';
import type { DataSource } from 'typeorm';

/** The schema the PgBoss1765300000000 migration creates. */
export const QUEUE_SCHEMA = 'pgboss';

/** Postgres' deadlock_detected, and how often a queue's creation is tried when it is one. */
const DEADLOCK = '40P01';
const CREATE_ATTEMPTS = 5;

/** How long a stopping node lets running handlers finish before their jobs are failed (retried). */
const STOP_TIMEOUT_MS = 10_000;

export interface WorkOptions {
  /** Seconds between polls of an idle queue; `notify` wakes the worker sooner. */
  pollingIntervalSeconds: number;
}

interface Worker {
  readonly id: string;
  readonly name: string;
  stopping: boolean;
  /** Ends the current wait between polls. */
  wake: () => void;
  loop: Promise<void>;
}

/**
 * pg-boss on the service's own Postgres and connection pool: the durable queue for work that
 * outlives a request (media jobs, webhook deliveries). Its schema comes from a migration, so it
 * starts with `migrate: false` and only checks the installed version. Its errors (a poll during a
 * database outage) are logged, never thrown: the queue resumes when the database does.
 */
@Injectable()
export class JobQueue implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('JobQueue');
  readonly boss: PgBoss;
  private readonly workers = new Map<string, Worker>();

  constructor(@InjectDataSource() dataSource: DataSource) {
    const pool = (dataSource.driver as unknown as { master: Pool }).master;
    this.boss = new PgBoss({
      db: { executeSql: (text, values) => pool.query(text, values) },
      schema: QUEUE_SCHEMA,
      migrate: false,
      // No cron schedules are used; maintenance (expiry, retention, archiving) still runs.
      schedule: false,
    });
    this.boss.on('error', (err) => this.logger.warn({ err: err.message }, 'job queue error'));
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.boss.start();
  }

  /**
   * Creates a queue (a no-op when it exists). pg-boss attaches each queue's partition to its job
   * table, so nodes creating different queues at once on a new database can deadlock (a gateway
   * and two workers starting together did); Postgres rolls the chosen statement back whole, so it
   * is run again.
   */
  async createQueue(name: string, options?: Parameters<PgBoss['createQueue']>[1]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.boss.createQueue(name, options);
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== DEADLOCK || attempt >= CREATE_ATTEMPTS) {
          throw err;
        }
      }
    }
  }

  /**
   * Runs `handler` for each job of queue `name`, one at a time, with its metadata (retry count,
   * expiry). pg-boss's own `work()` completes and fails jobs without awaiting the database, so a
   * database that goes away at that moment becomes an unhandled rejection, which ends the
   * process; here every completion is awaited and a failed one logged: the job stays active,
   * expires and is retried, which every handler must allow (deliveries may repeat). Resolves
   * with the worker's id, for `notify`.
   */
  work<T extends object>(
    name: string,
    options: WorkOptions,
    handler: (job: PgBoss.JobWithMetadata<T>) => Promise<unknown>,
  ): string {
    const id = randomUUID();
    const worker: Worker = {
      id,
      name,
      stopping: false,
      wake: () => undefined,
      loop: Promise.resolve(),
    };
    worker.loop = this.runWorker(worker, options, handler);
    this.workers.set(id, worker);
    return id;
  }

  /** Wakes an idle worker now (a job was just sent) instead of at its next poll. */
  notify(workerId: string): void {
    this.workers.get(workerId)?.wake();
  }

  /** Stops the workers of queue `name`, after the jobs they are running settle. */
  async offWork(name: string): Promise<void> {
    const stopping = [...this.workers.values()].filter((w) => w.name === name);
    for (const worker of stopping) {
      worker.stopping = true;
      worker.wake();
      this.workers.delete(worker.id);
    }
    await Promise.all(stopping.map((w) => w.loop));
  }

  private async runWorker<T extends object>(
    worker: Worker,
    options: WorkOptions,
    handler: (job: PgBoss.JobWithMetadata<T>) => Promise<unknown>,
  ): Promise<void> {
    while (!worker.stopping) {
      let job: PgBoss.JobWithMetadata<T> | undefined;
      try {
        [job] = await this.boss.fetch<T>(worker.name, { batchSize: 1, includeMetadata: true });
      } catch (err) {
        this.logger.warn({ err: describe(err), queue: worker.name }, 'job queue poll failed');
      }
      if (job) {
        await this.settle(worker.name, job, handler);
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.pollingIntervalSeconds * 1000);
        worker.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      worker.wake = () => undefined;
    }
  }

  private async settle<T extends object>(
    queue: string,
    job: PgBoss.JobWithMetadata<T>,
    handler: (job: PgBoss.JobWithMetadata<T>) => Promise<unknown>,
  ): Promise<void> {
    let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
    try {
      outcome = { ok: true, value: await handler(job) };
    } catch (error) {
      outcome = { ok: false, error };
    }
    try {
      if (outcome.ok) {
        const value = outcome.value;
        await this.boss.complete(queue, job.id, isObject(value) ? value : undefined);
      } else {
        await this.boss.fail(queue, job.id, { message: describe(outcome.error) });
      }
    } catch (err) {
      this.logger.warn(
        { err: describe(err), queue, job: job.id },
        'could not record a job outcome; it is retried when it expires',
      );
    }
  }

  async beforeApplicationShutdown(): Promise<void> {
    await Promise.all(
      [...new Set([...this.workers.values()].map((w) => w.name))].map((n) => this.offWork(n)),
    );
    await this.boss.stop({ graceful: true, timeout: STOP_TIMEOUT_MS, close: false });
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}
