import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import type { Repository } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../config/config';
import type { ClosedRecording } from '../protocol/messages';
import type { SessionEntity } from '../sessions/session.entity';
import { locateTool } from './ffmpeg-locator';
import { RecordingEntity } from './recording.entity';
import {
  type RecorderBacklog,
  type RecorderEvents,
  type RecorderSession,
  SessionRecorder,
} from './session-recorder';

/**
 * Live encoders per core when RECORDING_MAX_ENCODERS is unset: bench:recording kept 38 sessions of
 * 10 fps 640×480 in real time on 2 cores (about 1/20 of a core each with the service's overhead);
 * 18 per core leaves headroom for sharp, Postgres and the event loop.
 */
const ENCODERS_PER_CORE = 18;

/** `GET /v1/admin/recording`: encoder slots and each recorder's backlog. */
export interface RecordingStatus {
  encoders: { active: number; waiting: number; max: number };
  recorders: Array<{
    sessionId: string;
    /** Frames stored and not yet out of the encoder. */
    backlogFrames: number;
    /** Of those, the frames inside ffmpeg. */
    encodingFrames: number;
    fromSpool: boolean;
  }>;
}

/** A session's recording as the stream runtime sees it. */
export interface RecordingHandle {
  readonly id: string;
  offer: SessionRecorder['offer'];
  durable(): void;
  /** Finalizes; never rejects (a failure is a `failed` recording with its reason). */
  finish(lastSeq: number): Promise<ClosedRecording>;
  abort(): void;
}

/**
 * Owns the recordings: one recorder per session, at most RECORDING_MAX_ENCODERS encoding at once
 * (a session beyond that is encoded from its spool when a slot frees), the `recordings` rows and
 * their states recording → finalizing → ready | failed.
 */
@Injectable()
export class RecordingService {
  private readonly logger = new Logger(RecordingService.name);
  readonly maxEncoders: number;
  private active = 0;
  /** Sessions with frames to record (running or waiting for a slot): their backlog, by id. */
  private readonly recorders = new Map<string, () => RecorderBacklog>();
  private readonly waiting: Array<() => void> = [];
  readonly dir: string;
  private readonly ffmpegPath: string;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(RecordingEntity) private readonly recordings: Repository<RecordingEntity>,
  ) {
    this.maxEncoders = config.RECORDING_MAX_ENCODERS ?? availableParallelism() * ENCODERS_PER_CORE;
    this.dir = resolve(config.DATA_DIR, 'recordings');
    mkdirSync(this.dir, { recursive: true });
    this.ffmpegPath = locateTool('ffmpeg', config.FFMPEG_PATH).path;
  }

  /** Encoder slots and each live recorder's backlog, for operators and benchmarks. */
  status(): RecordingStatus {
    return {
      encoders: { active: this.active, waiting: this.waiting.length, max: this.maxEncoders },
      recorders: [...this.recorders].map(([sessionId, backlog]) => {
        const { frames, encoding, fromSpool } = backlog();
        return { sessionId, backlogFrames: frames, encodingFrames: encoding, fromSpool };
      }),
    };
  }

  outputSize(session: Pick<SessionEntity, 'recordingSettings'>): { width: number; height: number } {
    return (
      session.recordingSettings ?? {
        width: this.config.RECORDING_WIDTH,
        height: this.config.RECORDING_HEIGHT,
      }
    );
  }

  /**
   * Starts (or, after a restart, restarts from the spool) the recording of a session. A new
   * session takes an encoder slot with its first frame, so open but idle sessions hold none. With
   * a free slot a `live` recorder is fed from memory; without one the recorder waits and then reads
   * everything from the spool.
   */
  async begin(
    session: Pick<SessionEntity, 'id' | 'video' | 'audio' | 'recordingSettings'>,
    spoolPath: string,
    events: RecorderEvents,
    fromSpool: boolean,
  ): Promise<RecordingHandle> {
    const existing = await this.recordings.findOneBy({ sessionId: session.id });
    const id = existing?.id ?? randomUUID();
    const outputPath = join(this.dir, `${session.id}.mp4`);
    const size = this.outputSize(session);
    const recorderSession: RecorderSession = {
      id: session.id,
      fps: session.video.fps ?? this.config.RECORDING_FPS,
      audio: session.audio,
      width: size.width,
      height: size.height,
    };
    // A spool with frames in it is recorded now; a new session waits for its first frame.
    const eagerSlot = fromSpool ? this.tryAcquire() : null;
    const status = eagerSlot === false ? 'pending' : 'recording';
    if (existing) {
      await this.recordings.update({ id }, { status, failureReason: null, updatedAt: new Date() });
    } else {
      await this.recordings.insert({
        id,
        sessionId: session.id,
        status,
        path: outputPath,
        width: size.width,
        height: size.height,
      });
    }
    const spoolBytes = fromSpool ? fileSize(spoolPath) : 0;
    const makeRecorder = (mode: 'live' | 'spool', background = false) =>
      new SessionRecorder(
        {
          config: this.config,
          logger: this.logger,
          ffmpegPath: this.ffmpegPath,
          spoolPath,
          outputPath,
          events,
        },
        recorderSession,
        mode,
        mode === 'spool' ? Math.max(spoolBytes, fileSize(spoolPath)) : spoolBytes,
        background,
      );
    let recorder: SessionRecorder | null = null;
    let latest = 0;
    let holdsSlot = false;
    let finished = false;
    let started: Promise<SessionRecorder> | null = null;
    let forceStart: (() => void) | null = null;
    let aborted = false;
    const backlog = (): RecorderBacklog =>
      recorder?.backlog ?? { frames: latest, encoding: 0, fromSpool: true };

    const start = (slot: boolean): Promise<SessionRecorder> => {
      this.recorders.set(session.id, backlog);
      if (slot) {
        holdsSlot = true;
        const r = makeRecorder(fromSpool ? 'spool' : 'live');
        recorder = r;
        return r.start().then(() => r);
      }
      // No slot now: the frames wait in the spool; the recorder starts when a slot frees, or at
      // finish (finalizing must not wait behind sessions that hold slots while interrupted).
      const wait = this.waitForSlot();
      forceStart = () => wait.cancel();
      const marked =
        eagerSlot === null
          ? this.recordings
              .update({ id }, { status: 'pending', updatedAt: new Date() })
              .catch(() => undefined)
          : Promise.resolve();
      return wait.promise.then(async (gotSlot) => {
        holdsSlot = gotSlot;
        if (aborted) {
          throw new Error('recording aborted before it started');
        }
        await marked;
        if (!finished) {
          await this.recordings.update({ id }, { status: 'recording', updatedAt: new Date() });
        }
        // Without a slot (the session is finishing): beyond the node's encoder capacity.
        const r = makeRecorder('spool', !gotSlot);
        await r.start();
        recorder = r;
        r.durable();
        return r;
      });
    };
    // A failed start is reported by finish; until then the rejection is held, not unhandled.
    const launch = (slot: boolean): void => {
      const p = start(slot);
      p.catch(() => undefined);
      started = p;
    };
    if (eagerSlot !== null) {
      launch(eagerSlot);
    }
    const releaseSlot = () => {
      if (holdsSlot) {
        holdsSlot = false;
        this.release();
      }
    };
    return {
      id,
      offer: (message, header) => {
        latest = header.seq;
        if (!started) {
          launch(this.tryAcquire());
        }
        recorder?.offer(message, header);
      },
      durable: () => recorder?.durable(),
      finish: async (lastSeq) => {
        if (finished) {
          return { id, status: 'failed', durationMs: null, reason: 'finished twice' };
        }
        finished = true;
        forceStart?.();
        const since = Date.now();
        // Until the recorder has finished, any failure (the database too) must stop its encoders
        // and release its file and slot: else ffmpeg waits on its input for ever.
        let recorded = false;
        try {
          await this.recordings.update({ id }, { status: 'finalizing', updatedAt: new Date() });
          if (!started) {
            throw new Error('no video frames to record');
          }
          const r = await started;
          const result = await r.finish(Math.max(lastSeq, latest));
          recorded = true;
          await this.recordings.update(
            { id },
            {
              status: 'ready',
              path: result.path,
              bytes: result.bytes,
              sha256: result.sha256,
              durationMs: result.durationMs,
              frameCount: result.frameCount,
              width: result.width,
              height: result.height,
              videoCodec: result.videoCodec,
              audioCodec: result.audioCodec,
              readyAt: new Date(),
              updatedAt: new Date(),
            },
          );
          if (!this.config.KEEP_SPOOL) {
            rmSync(spoolPath, { force: true });
          }
          this.logger.log(
            { sessionId: session.id, frames: result.frameCount, ms: Date.now() - since },
            'recording ready',
          );
          return { id, status: 'ready', durationMs: result.durationMs };
        } catch (err) {
          const reason = err instanceof Error ? err.message : String(err);
          this.logger.error({ sessionId: session.id, err }, 'recording failed');
          await this.recordings
            .update(
              { id },
              { status: 'failed', failureReason: reason.slice(0, 1000), updatedAt: new Date() },
            )
            .catch(() => undefined);
          return { id, status: 'failed', durationMs: null, reason };
        } finally {
          if (!recorded) {
            recorder?.abort();
          }
          this.recorders.delete(session.id);
          releaseSlot();
        }
      },
      abort: () => {
        if (!finished) {
          finished = true;
          aborted = true;
          forceStart?.();
          recorder?.abort();
          this.recorders.delete(session.id);
          // A recorder still waiting for a slot gives it back as soon as it gets it.
          void started?.then(releaseSlot, releaseSlot);
          releaseSlot();
        }
      },
    };
  }

  private tryAcquire(): boolean {
    if (this.active < this.maxEncoders) {
      this.active++;
      return true;
    }
    return false;
  }

  /**
   * Waits for an encoder slot; `cancel()` stops waiting and resolves the promise with false (the
   * caller goes on without a slot).
   */
  private waitForSlot(): { promise: Promise<boolean>; cancel(): void } {
    let settle: (gotSlot: boolean) => void = () => undefined;
    const promise = new Promise<boolean>((resolve) => {
      settle = resolve;
    });
    const waiter = () => settle(true);
    this.waiting.push(waiter);
    return {
      promise,
      cancel: () => {
        const i = this.waiting.indexOf(waiter);
        if (i !== -1) {
          this.waiting.splice(i, 1);
          settle(false);
        }
      },
    };
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) {
      next();
    } else {
      this.active--;
    }
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
