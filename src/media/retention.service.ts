import {
  Inject,
  Injectable,
  Logger,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { DataSource, QueryRunner } from 'typeorm';
import { APP_CONFIG, type AppConfig, spoolDirOf } from '../config/config';
import { RecordingStore } from '../storage/recording-store';
import { describeStorageError } from '../storage/upload-policy';

/**
 * Advisory lock class of the retention sweep (the migration lock uses 0x66726d67); the second key
 * is the node, so a node never sweeps twice at once while nodes sweep their own rows in parallel.
 */
export const RETENTION_LOCK_KEY = 0x6672_6d72;
/** Sessions purged per query and DELETE. */
const BATCH_SIZE = 100;

interface Candidate {
  session_id: string;
  subject: string;
  channel: string;
  closed_at: Date;
  recording_id: string;
  recording_status: 'ready' | 'failed';
  path: string | null;
  sha256: string | null;
  bytes: string | null;
  storage: 'local' | 's3';
  object_key: string | null;
}

/**
 * Purges sessions that ended more than RETENTION_DAYS ago: the MP4 (its object too, when it was
 * uploaded to RECORDINGS_S3_URL or an upload began), the spool, and the `sessions`
 * row, whose foreign keys cascade to its messages, events and recording. Unset RETENTION_DAYS
 * keeps everything.
 *
 * Only this node's sessions are swept (`sessions.node`): their files live under this node's
 * DATA_DIR, which no other process may open, so another node would delete the row and leave the
 * file behind.
 *
 * The audit trail of a purge is the log: one structured line per session (ids, subject, channel,
 * sha256 and size of the recording). `session_events` cascade away with the session, so a
 * database record would need a table outside the session's cascade.
 */
@Injectable()
export class RetentionService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(RetentionService.name);
  private readonly spoolDir: string;
  private timer: NodeJS.Timeout | undefined;
  /** The sweep running or queued last; sweeps of one process run one after the other. */
  private last: Promise<number> | null = null;
  private stopping = false;

  constructor(
    @InjectDataSource() private readonly db: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly store: RecordingStore,
  ) {
    this.spoolDir = spoolDirOf(config);
  }

  onModuleInit(): void {
    if (this.config.RETENTION_DAYS === undefined) {
      return;
    }
    this.timer = setInterval(() => this.tick(), this.config.RETENTION_SWEEP_MS);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    // The sweep stops after its current batch; the database must still be there for it.
    await this.last?.catch(() => undefined);
  }

  /**
   * Runs one sweep now (after the one in progress, if any) and resolves with the number of
   * sessions purged: 0 without RETENTION_DAYS, or when another process of this node holds the lock.
   */
  purgeNow(): Promise<number> {
    const days = this.config.RETENTION_DAYS;
    if (days === undefined || this.stopping) {
      return Promise.resolve(0);
    }
    const previous = this.last ?? Promise.resolve(0);
    const run = previous.catch(() => 0).then(() => this.sweep(days));
    this.last = run;
    void run
      .catch(() => 0)
      .then(() => {
        if (this.last === run) {
          this.last = null;
        }
      });
    return run;
  }

  private tick(): void {
    if (this.last) {
      return;
    }
    this.purgeNow().catch((err: unknown) =>
      this.logger.warn({ err }, 'retention sweep failed; retrying on the next one'),
    );
  }

  private async sweep(days: number): Promise<number> {
    const runner = this.db.createQueryRunner();
    await runner.connect();
    try {
      const lockArgs = [RETENTION_LOCK_KEY, this.config.NODE_ID];
      const [{ locked }] = (await runner.query(
        'SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked',
        lockArgs,
      )) as Array<{ locked: boolean }>;
      if (!locked) {
        this.logger.debug('retention sweep skipped: another process of this node is sweeping');
        return 0;
      }
      try {
        return await this.purgeBatches(runner, days);
      } finally {
        await runner.query('SELECT pg_advisory_unlock($1, hashtext($2))', lockArgs);
      }
    } finally {
      await runner.release();
    }
  }

  private async purgeBatches(runner: QueryRunner, days: number): Promise<number> {
    let purged = 0;
    // Sessions whose files could not be deleted stay, and are left out of the later batches.
    const kept: string[] = [];
    while (!this.stopping) {
      const batch = (await runner.query(
        `SELECT s.id AS session_id, s.subject, s.channel, s.closed_at,
                r.id AS recording_id, r.status AS recording_status, r.path, r.sha256, r.bytes,
                r.storage, r.object_key
         FROM sessions s JOIN recordings r ON r.session_id = s.id
         WHERE s.node = $1 AND r.status IN ('ready', 'failed')
           AND s.closed_at < now() - make_interval(days => $2)
           AND s.id <> ALL($3::uuid[])
         ORDER BY s.closed_at, s.id
         LIMIT ${BATCH_SIZE}`,
        [this.config.NODE_ID, days, kept],
      )) as Candidate[];
      if (batch.length === 0) {
        break;
      }
      const removable: Candidate[] = [];
      for (const c of batch) {
        if (await this.removeFiles(c)) {
          removable.push(c);
        } else {
          kept.push(c.session_id);
        }
      }
      const deleted = await this.deleteSessions(runner, removable);
      for (const c of removable.filter((r) => deleted.has(r.session_id))) {
        this.logger.log(
          {
            event: 'session_purged',
            sessionId: c.session_id,
            subject: c.subject,
            channel: c.channel,
            closedAt: c.closed_at,
            recordingId: c.recording_id,
            recordingStatus: c.recording_status,
            sha256: c.sha256,
            bytes: c.bytes === null ? null : Number(c.bytes),
            retentionDays: days,
          },
          'session purged by retention',
        );
      }
      purged += deleted.size;
      this.logger.log(
        { found: batch.length, purged: deleted.size, kept: batch.length - removable.length },
        'retention batch done',
      );
      if (batch.length < BATCH_SIZE) {
        break;
      }
    }
    return purged;
  }

  /** Deletes the recording (file and object) and the spool; one already gone is fine. */
  private async removeFiles(c: Candidate): Promise<boolean> {
    if (c.object_key !== null && (c.storage === 's3' || this.store.enabled)) {
      try {
        await this.store.delete(c.object_key);
      } catch (err) {
        this.logger.warn(
          { sessionId: c.session_id, key: c.object_key, error: describeStorageError(err) },
          'retention could not delete a recording object; the session is kept',
        );
        return false;
      }
    }
    const paths = [join(this.spoolDir, `${c.session_id}.spool`)];
    if (c.path) {
      paths.unshift(c.path);
    }
    for (const path of paths) {
      try {
        await unlink(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.logger.warn(
            { err, sessionId: c.session_id, path },
            'retention could not delete a file; the session is kept',
          );
          return false;
        }
      }
    }
    return true;
  }

  private async deleteSessions(runner: QueryRunner, rows: Candidate[]): Promise<Set<string>> {
    if (rows.length === 0) {
      return new Set();
    }
    // For DELETE ... RETURNING, TypeORM's postgres driver answers [rows, affectedCount].
    const [deleted] = (await runner.query(
      `DELETE FROM sessions WHERE id = ANY($1::uuid[]) AND node = $2 RETURNING id`,
      [rows.map((r) => r.session_id), this.config.NODE_ID],
    )) as [Array<{ id: string }>, number];
    return new Set(deleted.map((r) => r.id));
  }
}
