import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { unlink } from 'node:fs/promises';
import type { Repository } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { RecordingStore, expectedObject } from '../storage/recording-store';
import { describeStorageError, retryDelayMs } from '../storage/upload-policy';
import { RecordingEntity } from './recording.entity';
import { RecordingService } from './recording.service';

/**
 * Recordings waiting for a decode check, or for their retry time, are looked for this often; a
 * recording that becomes ready is taken at once.
 */
const SWEEP_MS = 5_000;
/** An `uploading` claim whose process died is taken again after this long. */
const LEASE_S = 30 * 60;

interface Claimed {
  id: string;
  sessionId: string;
  path: string;
  sha256: string | null;
  storage: 'local' | 's3';
  objectKey: string;
  attempts: number;
}

/** What /metrics shows of the uploads of this node. */
export interface UploadStats {
  enabled: boolean;
  /** Ready recordings of this node still on local disk, as of the last pass. */
  backlog: number;
  uploaded: number;
  failed: number;
}

/**
 * Moves ready recordings to S3-compatible storage (RECORDINGS_S3_URL), one at a time, in the
 * background: after the decode check (right away when RECORDING_DECODE_CHECK is off), upload,
 * verify by size and SHA-256, mark the row `s3`, and only then delete the local file. The queue
 * is the table (src/storage/upload-policy.ts has the states); a failed attempt waits with a
 * doubling delay, across restarts. Only this node's sessions are taken: their files are under
 * this node's RECORDINGS_DIR.
 */
@Injectable()
export class RecordingUploadService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(RecordingUploadService.name);
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private readonly counts = { backlog: 0, uploaded: 0, failed: 0 };

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(RecordingEntity) private readonly rows: Repository<RecordingEntity>,
    private readonly store: RecordingStore,
    recordings: RecordingService,
  ) {
    recordings.onReady(() => this.kick());
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.store.enabled) {
      return;
    }
    // A claim of this node's is left by a process that stopped mid-upload: take it again now.
    await this.rows
      .query(
        `UPDATE recordings SET upload_state = 'pending', upload_retry_at = now()
          WHERE upload_state = 'uploading'
            AND session_id IN (SELECT id FROM sessions WHERE node = $1)`,
        [this.config.NODE_ID],
      )
      .catch((err: unknown) => this.logger.warn({ err }, 'could not release upload claims'));
    this.kick();
    this.timer = setInterval(() => this.kick(), SWEEP_MS);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.abort.abort();
    await this.running;
  }

  stats(): UploadStats {
    return { enabled: this.store.enabled, ...this.counts };
  }

  /** Uploads waiting recordings until none is left; a call while running makes it look again. */
  kick(): void {
    if (this.stopped || !this.store.enabled) {
      return;
    }
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain()
      .catch((err: unknown) =>
        this.logger.warn({ err: describeStorageError(err) }, 'recording uploads paused'),
      )
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async drain(): Promise<void> {
    while (!this.stopped) {
      const claimed = await this.claim();
      if (!claimed) {
        break;
      }
      await this.move(claimed);
    }
    if (!this.stopped) {
      await this.countBacklog();
    }
  }

  /** Upload, verify, mark, unlink, clear: each step is skipped when a previous claim did it. */
  private async move(c: Claimed): Promise<void> {
    const signal = this.abort.signal;
    try {
      if (c.storage === 'local') {
        const expected = await expectedObject(c.path);
        if (c.sha256 !== null && expected.sha256Hex !== c.sha256) {
          throw new Error(
            `the local file no longer matches the recording's sha256 (${expected.sha256Hex}, recorded ${c.sha256})`,
          );
        }
        await this.store.upload(c.path, c.objectKey, signal);
        const verifiedBy = await this.store.verify(c.objectKey, expected, signal);
        // From here the object is the recording: downloads read it, retention deletes it.
        await this.rows.update({ id: c.id }, { storage: 's3' });
        this.logger.log(
          {
            recordingId: c.id,
            sessionId: c.sessionId,
            key: c.objectKey,
            bytes: expected.bytes,
            verifiedBy,
          },
          'recording uploaded and verified',
        );
      }
      await unlink(c.path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') {
          throw err;
        }
      });
      await this.rows.update(
        { id: c.id },
        {
          path: null,
          uploadState: 'uploaded',
          uploadError: null,
          uploadRetryAt: null,
          uploadedAt: new Date(),
        },
      );
      this.counts.uploaded++;
    } catch (err) {
      if (this.stopped) {
        // Cut short by shutdown: not the storage's fault, so not an attempt.
        await this.rows.update(
          { id: c.id },
          {
            uploadState: 'pending',
            uploadRetryAt: new Date(),
            // The claim counted an attempt only for an upload, not for a finishing unlink.
            uploadAttempts: c.storage === 'local' ? c.attempts - 1 : c.attempts,
          },
        );
        return;
      }
      const error = describeStorageError(err);
      const delayMs = retryDelayMs(c.attempts, this.config.RECORDINGS_S3_RETRY_DELAY_S);
      await this.rows.update(
        { id: c.id },
        {
          uploadState: 'pending',
          uploadError: error,
          uploadRetryAt: new Date(Date.now() + delayMs),
        },
      );
      this.counts.failed++;
      this.logger.warn(
        {
          recordingId: c.id,
          sessionId: c.sessionId,
          attempt: c.attempts,
          error,
          retryInMs: delayMs,
        },
        'recording upload failed; the local file is kept',
      );
    }
  }

  /** Takes the oldest recording of this node that is due, for this process. */
  private async claim(): Promise<Claimed | null> {
    const result = await this.rows.query<unknown[]>(
      `UPDATE recordings
          SET upload_state = 'uploading',
              upload_attempts = upload_attempts + CASE WHEN storage = 'local' THEN 1 ELSE 0 END,
              upload_retry_at = now() + make_interval(secs => $2),
              object_key = COALESCE(object_key, $3 || session_id::text || '.mp4')
        WHERE id = (
          SELECT r.id FROM recordings r JOIN sessions s ON s.id = r.session_id
           WHERE r.status = 'ready' AND r.path IS NOT NULL AND s.node = $1
             AND (NOT $4::boolean OR r.decode_check IS NULL
                  OR r.decode_check IN ('passed', 'failed'))
             AND (r.upload_state IS NULL OR r.upload_retry_at <= now())
           ORDER BY r.ready_at
           LIMIT 1
           FOR UPDATE OF r SKIP LOCKED)
        RETURNING id, session_id, path, sha256, storage, object_key, upload_attempts`,
      [this.config.NODE_ID, LEASE_S, this.store.keyPrefix, this.config.RECORDING_DECODE_CHECK],
    );
    // TypeORM returns [rows, count] for UPDATE … RETURNING on Postgres.
    const rows = (Array.isArray(result[0]) ? result[0] : result) as Array<{
      id: string;
      session_id: string;
      path: string;
      sha256: string | null;
      storage: 'local' | 's3';
      object_key: string;
      upload_attempts: number;
    }>;
    const row = rows[0];
    return row
      ? {
          id: row.id,
          sessionId: row.session_id,
          path: row.path,
          sha256: row.sha256,
          storage: row.storage,
          objectKey: row.object_key,
          attempts: row.upload_attempts,
        }
      : null;
  }

  private async countBacklog(): Promise<void> {
    const [{ n }] = await this.rows.query<Array<{ n: string }>>(
      `SELECT count(*) AS n FROM recordings r JOIN sessions s ON s.id = r.session_id
        WHERE r.status = 'ready' AND r.path IS NOT NULL AND s.node = $1`,
      [this.config.NODE_ID],
    );
    this.counts.backlog = Number(n);
  }
}
