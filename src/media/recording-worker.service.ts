import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { type FSWatcher, watch } from 'node:fs';
import type { Repository } from 'typeorm';
import { APP_CONFIG, type AppConfig, spoolDirOf } from '../config/config';
import { SessionEntity } from '../sessions/session.entity';
import { RecordingEntity } from './recording.entity';
import { spoolFileOf } from '../spool/spool';
import { NotifyListener } from './notify-listener';
import {
  type ClaimedWork,
  RECORDING_CLOSE_CHANNEL,
  RECORDING_WORK_CHANNEL,
  RecordingWorkStore,
} from './recording-work.store';
import { RecordingService } from './recording.service';
import type { RecorderEvents } from './session-recorder';
import type { SessionRecording } from './session-recording';

/** Unclaimed work is looked for this often even without a notification. */
const CLAIM_POLL_MS = 1_000;
/**
 * Each followed spool is read again this often even without a file-system event: inotify does
 * not see what another machine appends to a network file system.
 */
const FOLLOW_POLL_MS = 100;
/**
 * A recording whose lease was not renewed for this share of RECORDING_LEASE_MS is given up here:
 * by its expiry another worker may have claimed it, and two encoders must not write one file.
 */
const FENCE_SHARE = 0.8;

interface Held {
  recording: SessionRecording;
  sessionId: string;
  watcher: FSWatcher | null;
  /** Last successful claim or renewal (Date.now()). */
  renewedAt: number;
  finishing: Promise<void> | null;
}

/**
 * The worker's side of recording (NODE_ROLE=worker): claims `recording_work` rows with a lease up
 * to its free encoder slots, records each session by following its spool on the shared volume as
 * the gateway appends (woken by fs.watch and a short poll), renews every lease in one statement a
 * third of RECORDING_LEASE_MS apart, and finishes a recording when its gateway says where the
 * session ended. A worker that dies stops renewing: its recordings are claimed by another worker,
 * which records them again from the start of their spools.
 */
@Injectable()
export class RecordingWorker implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(RecordingWorker.name);
  private readonly held = new Map<string, Held>();
  private readonly spoolDir: string;
  private listener: NotifyListener | null = null;
  private readonly timers: NodeJS.Timeout[] = [];
  private claiming: Promise<void> | null = null;
  private claimAgain = false;
  private renewing = false;
  private stopped = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(SessionEntity) private readonly sessions: Repository<SessionEntity>,
    @InjectRepository(RecordingEntity) private readonly rows: Repository<RecordingEntity>,
    private readonly work: RecordingWorkStore,
    private readonly recordings: RecordingService,
  ) {
    this.spoolDir = spoolDirOf(config);
  }

  onApplicationBootstrap(): void {
    if (this.config.NODE_ROLE !== 'worker') {
      return;
    }
    this.listener = new NotifyListener(
      this.work.connectionOptions,
      {
        [RECORDING_WORK_CHANNEL]: () => this.kickClaim(),
        [RECORDING_CLOSE_CHANNEL]: (payload) => this.onClose(payload),
      },
      this.logger,
      // Work handed over or closed while the connection was down: the rows say.
      () => {
        this.kickClaim();
        void this.renew();
      },
    );
    this.listener.start();
    this.every(CLAIM_POLL_MS, () => this.kickClaim());
    this.every(Math.floor(this.config.RECORDING_LEASE_MS / 3), () => void this.renew());
    this.every(FOLLOW_POLL_MS, () => {
      for (const held of this.held.values()) {
        held.recording.durable();
      }
    });
    this.kickClaim();
  }

  /**
   * Stops claiming, lets recordings already finishing end, stops the others and gives their
   * leases back so that another worker takes them at once.
   */
  async onModuleDestroy(): Promise<void> {
    if (this.stopped) {
      return;
    }
    this.stopped = true;
    this.timers.forEach(clearInterval);
    await this.claiming;
    await this.listener?.stop();
    const finishing: Array<Promise<void>> = [];
    for (const [id, held] of this.held) {
      if (held.finishing) {
        finishing.push(held.finishing);
      } else {
        this.drop(id, held);
      }
    }
    await Promise.all(finishing);
    if (this.config.NODE_ROLE === 'worker') {
      await this.work
        .releaseAll(this.config.NODE_ID)
        .catch((err: unknown) =>
          this.logger.warn({ err }, 'could not give the recording leases back'),
        );
    }
  }

  /** Recordings this worker holds now. */
  get holding(): number {
    return this.held.size;
  }

  private every(ms: number, fn: () => void): void {
    const timer = setInterval(fn, ms);
    timer.unref();
    this.timers.push(timer);
  }

  private kickClaim(): void {
    if (this.stopped) {
      return;
    }
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claiming = this.claimLoop().finally(() => {
      this.claiming = null;
    });
  }

  private async claimLoop(): Promise<void> {
    do {
      this.claimAgain = false;
      try {
        await this.claimOnce();
      } catch (err) {
        this.logger.warn({ err }, 'claiming recording work failed; retrying');
        return;
      }
    } while (this.claimAgain && !this.stopped);
  }

  private async claimOnce(): Promise<void> {
    const room = this.recordings.freeSlots;
    if (room === 0 || this.stopped) {
      return;
    }
    const claimed = await this.work.claim(
      this.config.NODE_ID,
      room,
      this.config.RECORDING_LEASE_MS,
    );
    for (const work of claimed) {
      await this.start(work).catch((err: unknown) => {
        // Not held: its lease lapses and it is claimed again (here or elsewhere).
        this.logger.error({ err, sessionId: work.sessionId }, 'could not start a recording');
      });
    }
  }

  private async start(work: ClaimedWork): Promise<void> {
    const claimedAt = Date.now();
    const [session, row] = await Promise.all([
      this.sessions.findOneBy({ id: work.sessionId }),
      this.rows.findOne({
        select: { status: true, durationMs: true },
        where: { id: work.recordingId },
      }),
    ]);
    if (!session || !row) {
      await this.work.done(work.recordingId, this.config.NODE_ID, {
        id: work.recordingId,
        status: 'failed',
        durationMs: null,
        reason: 'session is gone',
      });
      return;
    }
    if (row.status === 'ready') {
      // Its worker died between making it ready (its spool then removed) and reporting it.
      await this.work.done(work.recordingId, this.config.NODE_ID, {
        id: work.recordingId,
        status: 'ready',
        durationMs: row.durationMs,
      });
      return;
    }
    const spoolPath = spoolFileOf(this.spoolDir, session.id);
    const recording = await this.recordings.follow(
      work.recordingId,
      session,
      spoolPath,
      this.eventsFor(session.id),
    );
    if (this.stopped) {
      recording.abort();
      return;
    }
    const held: Held = {
      recording,
      sessionId: session.id,
      watcher: null,
      renewedAt: claimedAt,
      finishing: null,
    };
    this.held.set(work.recordingId, held);
    try {
      held.watcher = watch(spoolPath, { persistent: false }, () => recording.durable());
      held.watcher.on('error', () => this.unwatch(held));
    } catch {
      // No spool yet, or no inotify here: the poll reads it.
    }
    this.logger.log(
      { sessionId: session.id, attempt: work.attempts, finalSeq: work.finalSeq },
      'recording claimed',
    );
    if (work.finalSeq !== null) {
      this.finish(work.recordingId, work.finalSeq);
    }
  }

  /** What the recorder reports has no client here: bad images are logged, flow is moot. */
  private eventsFor(sessionId: string): RecorderEvents {
    return {
      onBadImage: (seq, reason) =>
        this.logger.warn({ sessionId, seq, reason }, 'image left out of the recording'),
      onRefused: () => undefined,
      onBacklog: () => undefined,
    };
  }

  private onClose(payload: string): void {
    const at = payload.lastIndexOf(':');
    const lastSeq = Number(payload.slice(at + 1));
    if (at > 0 && Number.isInteger(lastSeq)) {
      this.finish(payload.slice(0, at), lastSeq);
    }
  }

  private finish(id: string, lastSeq: number): void {
    const held = this.held.get(id);
    if (!held || held.finishing) {
      return;
    }
    // The rest of the spool is read now, not at the next event or poll.
    held.finishing = held.recording
      .finish(lastSeq)
      .then(async (closed) => {
        this.unwatch(held);
        const told = await this.work.done(id, this.config.NODE_ID, closed);
        if (!told) {
          this.logger.warn({ sessionId: held.sessionId }, 'recording finished after its lease');
        }
      })
      .catch((err: unknown) =>
        // The work row stays: the lease lapses and the recording is made again from the spool.
        this.logger.warn({ err, sessionId: held.sessionId }, 'could not report a recording done'),
      )
      .finally(() => {
        if (this.held.get(id) === held) {
          this.held.delete(id);
        }
        this.kickClaim();
      });
  }

  /**
   * One statement for every lease held. A recording not renewed went to another worker (or is
   * finished); one whose renewals failed for most of a lease is given up before it lapses.
   */
  private async renew(): Promise<void> {
    if (this.renewing || this.held.size === 0 || this.stopped) {
      return;
    }
    this.renewing = true;
    const ids = [...this.held.keys()];
    const started = Date.now();
    try {
      const kept = await this.work.renew(this.config.NODE_ID, ids, this.config.RECORDING_LEASE_MS);
      for (const id of ids) {
        const held = this.held.get(id);
        if (!held) {
          continue;
        }
        if (!kept.has(id)) {
          if (!held.finishing) {
            this.logger.warn({ sessionId: held.sessionId }, 'recording lease lost');
            this.drop(id, held);
          }
          continue;
        }
        held.renewedAt = started;
        const finalSeq = kept.get(id);
        if (finalSeq !== null && finalSeq !== undefined) {
          this.finish(id, finalSeq);
        }
      }
    } catch (err) {
      this.logger.warn({ err }, 'renewing recording leases failed');
    } finally {
      this.renewing = false;
    }
    this.fence();
  }

  private fence(): void {
    const before = Date.now() - this.config.RECORDING_LEASE_MS * FENCE_SHARE;
    for (const [id, held] of this.held) {
      if (!held.finishing && held.renewedAt < before) {
        this.logger.warn({ sessionId: held.sessionId }, 'recording lease not renewed; given up');
        this.drop(id, held);
      }
    }
  }

  private drop(id: string, held: Held): void {
    this.unwatch(held);
    held.recording.abort();
    this.held.delete(id);
  }

  private unwatch(held: Held): void {
    held.watcher?.close();
    held.watcher = null;
  }
}
