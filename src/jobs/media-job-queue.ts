import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type PgBoss from 'pg-boss';
import type { DataSource } from 'typeorm';

/** The pg-boss queue of media jobs; each pg-boss job has the id of its `media_jobs` row. */
export const MEDIA_JOB_QUEUE = 'media-job';

/** What a pg-boss job of the queue carries: the row holds everything else. */
export interface MediaJobMessage {
  jobId: string;
}

/** The service's own pg pool (TypeORM's), which pg-boss uses too. */
export function poolOf(dataSource: DataSource): Pool {
  return (dataSource.driver as unknown as { master: Pool }).master;
}

/**
 * Runs `work` in one transaction on a pooled client: the `media_jobs` row and its pg-boss job
 * change together (pg-boss takes a `db` per call for exactly this), so no crash leaves one
 * changed without the other.
 */
export async function inTransaction<T>(
  pool: Pool,
  work: (client: PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** pg-boss's calls on this transaction's client. */
export function bossDb(client: PoolClient): PgBoss.Db {
  return { executeSql: (text, values) => client.query(text, values) };
}

export interface JobEvent {
  jobId: string;
  type: string;
  node: string;
  subject?: string | null;
  detail?: Record<string, unknown>;
}

/**
 * Appends to a job's audit trail, in the transaction that made it happen. `clock_timestamp()`, not
 * `now()`: events of one transaction keep their order.
 */
export async function recordJobEvent(client: PoolClient, e: JobEvent): Promise<void> {
  await client.query(
    `INSERT INTO media_job_events (id, job_id, at, type, node, subject, detail)
     VALUES ($1, $2, clock_timestamp(), $3, $4, $5, $6)`,
    [randomUUID(), e.jobId, e.type, e.node, e.subject ?? null, JSON.stringify(e.detail ?? {})],
  );
}

/**
 * Fails an active pg-boss job for good, however many retries it has left: pg-boss 10 has no call
 * for that (`fail` retries while `retry_count < retry_limit`), so the limit is lowered to the
 * count first, in the same transaction. A bad input must not be tried again.
 */
export async function failForGood(
  boss: PgBoss,
  client: PoolClient,
  schema: string,
  id: string,
  reason: string,
): Promise<void> {
  await client.query(
    `UPDATE ${schema}.job SET retry_limit = retry_count
      WHERE name = $1 AND id = $2 AND state = 'active'`,
    [MEDIA_JOB_QUEUE, id],
  );
  await boss.fail(MEDIA_JOB_QUEUE, id, { reason }, { db: bossDb(client) });
}
