import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Repository } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../config/config';
import type { MediaHeader, StoredHeader } from '../protocol/media-header';
import { type ClosedRecording, closedRecordingSchema } from '../protocol/messages';
import { NotifyListener } from './notify-listener';
import { RecordingEntity } from './recording.entity';
import { RECORDING_DONE_CHANNEL, RecordingWorkStore } from './recording-work.store';
import type { RecorderEvents } from './session-recorder';
import type { RecordingHandle } from './session-recording';

/**
 * While `close` waits for a worker, the recording's row is read this often too: a notification
 * sent while the listening connection was down is lost.
 */
const ROW_CHECK_MS = 1_000;

/**
 * The gateway's side of recording (NODE_ROLE=gateway): a session's recording is a
 * `recording_work` row that workers claim; its handle encodes nothing. `finish` tells the worker
 * the session's last seq and waits (RECORDING_CLOSE_WAIT_MS at most) for the worker's
 * notification that the recording is ready, so `closed` says what it says on a single node.
 */
@Injectable()
export class RemoteRecordings implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(RemoteRecordings.name);
  private readonly waiters = new Map<string, (closed: ClosedRecording) => void>();
  private listener: NotifyListener | null = null;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(RecordingEntity) private readonly rows: Repository<RecordingEntity>,
    private readonly work: RecordingWorkStore,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.NODE_ROLE !== 'gateway') {
      return;
    }
    this.listener = new NotifyListener(
      this.work.connectionOptions,
      { [RECORDING_DONE_CHANNEL]: (payload) => this.onDone(payload) },
      this.logger,
    );
    this.listener.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.listener?.stop();
  }

  /** The session runtime's handle on a recording handed to the workers. */
  handle(id: string, events: RecorderEvents): RecordingHandle {
    return new RemoteRecording(id, events, this);
  }

  /** Tells the worker where the session ended, then waits for the recording (bounded). */
  async finish(id: string, lastSeq: number): Promise<ClosedRecording> {
    // Waiting before telling: the worker may answer before the UPDATE's reply reaches us.
    let resolve!: (closed: ClosedRecording) => void;
    const done = new Promise<ClosedRecording>((r) => (resolve = r));
    this.waiters.set(id, resolve);
    let timer: NodeJS.Timeout | undefined;
    try {
      // No work left to tell (a worker finished it already): the row has the outcome.
      const told = await this.work.close(id, lastSeq);
      const deadline = told ? Date.now() + this.config.RECORDING_CLOSE_WAIT_MS : 0;
      for (;;) {
        const left = deadline - Date.now();
        const tick = new Promise<null>((r) => {
          timer = setTimeout(() => r(null), Math.max(0, Math.min(ROW_CHECK_MS, left)));
        });
        const notified = await Promise.race([done, tick]);
        clearTimeout(timer);
        if (notified) {
          return notified;
        }
        const row = await this.rows.findOne({
          select: { status: true, durationMs: true, failureReason: true },
          where: { id },
        });
        if (!row) {
          return { id, status: 'failed', durationMs: null, reason: 'recording row is gone' };
        }
        if (row.status === 'ready' || row.status === 'failed' || left <= ROW_CHECK_MS) {
          // Past the wait: the recording is still the workers' to finish; the row will say when.
          return {
            id,
            status: row.status,
            durationMs: row.status === 'ready' ? row.durationMs : null,
            ...(row.status === 'failed' ? { reason: row.failureReason ?? 'failed' } : {}),
          };
        }
      }
    } finally {
      clearTimeout(timer);
      this.waiters.delete(id);
    }
  }

  private onDone(payload: string): void {
    let closed: ClosedRecording;
    try {
      closed = closedRecordingSchema.parse(JSON.parse(payload));
    } catch (err) {
      this.logger.warn({ err }, 'unreadable recording notification');
      return;
    }
    if (closed.id) {
      this.waiters.get(closed.id)?.(closed);
    }
  }
}

/**
 * A gateway session's recording: a worker follows the spool, so frames are not handed to it.
 * Refused chunks are counted here, from their tombstone's header (what a local recorder reports
 * when it reads one), so `closed`, the row and the audit trail count them as on a single node.
 */
class RemoteRecording implements RecordingHandle {
  private finished = false;

  constructor(
    readonly id: string,
    private readonly events: RecorderEvents,
    private readonly remote: RemoteRecordings,
  ) {}

  offer(_message: Buffer, header: MediaHeader | StoredHeader): void {
    if ('refused' in header && header.refused) {
      this.events.onRefused(header.seq);
    }
  }

  durable(): void {
    // The worker reads the spool file as it grows.
  }

  async finish(lastSeq: number): Promise<ClosedRecording> {
    if (this.finished) {
      return { id: this.id, status: 'failed', durationMs: null, reason: 'finished twice' };
    }
    this.finished = true;
    try {
      return await this.remote.finish(this.id, lastSeq);
    } catch (err) {
      // The database did not take the close: the worker goes on following, and the session,
      // whose end is not stored either, is finished again from its spool later.
      const reason = err instanceof Error ? err.message : String(err);
      return { id: this.id, status: 'failed', durationMs: null, reason };
    }
  }

  /**
   * The runtime goes away (shutdown, spool failure, takeover): nothing to stop here. The worker
   * goes on following the spool, which a resume continues, and finishes when the session ends.
   */
  abort(): void {}
}
