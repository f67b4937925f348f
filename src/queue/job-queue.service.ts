import {
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type BeforeApplicationShutdown,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import PgBoss from 'pg-boss';
import type { Pool } from 'pg';
import type { DataSource } from 'typeorm';

/** The schema the PgBoss1765300000000 migration creates. */
export const QUEUE_SCHEMA = 'pgboss';

/** How long a stopping node lets running handlers finish before their jobs are failed (retried). */
const STOP_TIMEOUT_MS = 10_000;

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

  async beforeApplicationShutdown(): Promise<void> {
    await this.boss.stop({ graceful: true, timeout: STOP_TIMEOUT_MS, close: false });
  }
}
