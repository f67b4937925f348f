import type { Logger } from '@nestjs/common';
import { rmSync } from 'node:fs';
import type { Repository } from 'typeorm';
import type { ClosedRecording } from '../protocol/messages';
import type { EncoderSlots } from './encoder-slots';
import type { RecordingEntity } from './recording.entity';
import { isDiskFull } from '../spool/free-space';
import { NoVideoFramesError, type RecorderBacklog, type SessionRecorder } from './session-recorder';
import type { TextCue } from './webvtt';

/** A session's recording as the stream runtime sees it. */
export interface RecordingHandle {
  readonly id: string;
  offer: SessionRecorder['offer'];
  durable(): void;
  /** Finalizes; never rejects (a failure is a `failed` recording with its reason). */
  finish(lastSeq: number): Promise<ClosedRecording>;
  abort(): void;
}

/** What one session's recording needs from the service that owns every recording. */
export interface SessionRecordingDeps {
  /** The `recordings` row's id. */
  id: string;
  sessionId: string;
  spoolPath: string;
  /** The session's frames are already in the spool (restart, recovery): record them now. */
  fromSpool: boolean;
  /**
   * Another node writes the spool (NODE_ROLE=worker): the recorder follows the file as it grows
   * (woken by `durable()`), from its start, and is never offered frames.
   */
  following?: boolean;
  keepSpool: boolean;
  slots: EncoderSlots;
  rows: Repository<RecordingEntity>;
  logger: Logger;
  /** A recorder reading the spool or fed live; `onFailed` is wired by the caller. */
  makeRecorder(
    mode: 'live' | 'spool' | 'follow',
    background: boolean,
    onFailed: (err: Error) => void,
  ): SessionRecorder;
  /**
   * The cues of the session's messages, from the database: read when the recording is finalized,
   * once every message of the session is stored, so a recording rebuilt later has the same.
   */
  loadCues(): Promise<TextCue[]>;
  /** Whether the ready recording is queued for its decode check (RECORDING_DECODE_CHECK). */
  decodeCheck: boolean;
  /** The recording is ready (its row says so). */
  onReady(): void;
  /** Lists the session among the recorders (`GET /v1/admin/recording`), or drops it. */
  track(backlog: (() => RecorderBacklog) | null): void;
}

/**
 * One session's recording: when its recorder starts (with a free encoder slot at once, else when
 * one frees, or at finish), the slot it holds (released exactly once), and the `recordings` row's
 * states recording (or pending) → finalizing → ready | failed.
 */
export class SessionRecording implements RecordingHandle {
  private recorder: SessionRecorder | null = null;
  /** Highest seq offered. */
  private latest = 0;
  private holdsSlot = false;
  private finished = false;
  private aborted = false;
  private started: Promise<SessionRecorder> | null = null;
  /** Stops waiting for a slot: the recorder then starts without one. */
  private forceStart: (() => void) | null = null;

  constructor(
    private readonly deps: SessionRecordingDeps,
    /** A slot taken up front (true), none free (false), or not tried: a new session's first frame takes one. */
    private readonly eagerSlot: boolean | null,
  ) {
    if (eagerSlot !== null) {
      this.launch(eagerSlot);
    }
  }

  get id(): string {
    return this.deps.id;
  }

  offer(...args: Parameters<SessionRecorder['offer']>): void {
    this.latest = args[1].seq;
    if (!this.started) {
      this.launch(this.deps.slots.tryAcquire());
    }
    this.recorder?.offer(...args);
  }

  durable(): void {
    this.recorder?.durable();
  }

  async finish(lastSeq: number): Promise<ClosedRecording> {
    const { id, sessionId } = this.deps;
    if (this.finished) {
      return { id, status: 'failed', durationMs: null, reason: 'finished twice' };
    }
    this.finished = true;
    this.forceStart?.();
    const since = Date.now();
    // Until the recorder has finished, any failure (the database's too) must stop its encoders
    // and release its file and slot: else ffmpeg waits on its input for ever.
    let recorded = false;
    // The encoders flush while the row is marked and the cues are read: at `close` nothing waits
    // for two database round trips before ffmpeg is told to finish. Both are awaited below; until
    // then a rejection is held, not unhandled.
    const finalizing = this.deps.rows.update(
      { id },
      { status: 'finalizing', updatedAt: new Date() },
    );
    finalizing.catch(() => undefined);
    try {
      if (!this.started) {
        await finalizing;
        throw new NoVideoFramesError();
      }
      const cues = this.deps.loadCues();
      cues.catch(() => undefined);
      const recorder = await this.started;
      const upTo = Math.max(lastSeq, this.latest);
      const [result] = await Promise.all([
        recorder.finish(upTo, cues).catch(async (err: unknown) => {
          if (!isDiskFull(err)) {
            throw err;
          }
          // The disk filled up under the live recorder; the spool has every frame: rebuild.
          this.deps.logger.warn({ sessionId, err }, 'recording rebuilt from the spool');
          return this.rebuild(upTo, cues);
        }),
        finalizing,
      ]);
      recorded = true;
      await this.deps.rows.update(
        { id },
        {
          status: 'ready',
          failureReason: null,
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
          decodeCheck: this.deps.decodeCheck ? 'pending' : null,
          decodeFrames: null,
          decodeErrors: null,
          decodeCheckedAt: null,
        },
      );
      this.deps.onReady();
      if (!this.deps.keepSpool) {
        rmSync(this.deps.spoolPath, { force: true });
      }
      this.deps.logger.log(
        { sessionId, frames: result.frameCount, ms: Date.now() - since },
        'recording ready',
      );
      return { id, status: 'ready', durationMs: result.durationMs };
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (err instanceof NoVideoFramesError) {
        // An expected outcome (a session that sent no video), not a fault: no stack trace.
        this.deps.logger.warn({ sessionId, reason }, 'recording failed');
      } else {
        this.deps.logger.error({ sessionId, err }, 'recording failed');
      }
      // Written after the `finalizing` mark, never overtaken by it.
      await finalizing.catch(() => undefined);
      await this.markFailed(reason);
      return { id, status: 'failed', durationMs: null, reason };
    } finally {
      if (!recorded) {
        this.recorder?.abort();
      }
      this.deps.track(null);
      this.releaseSlot();
    }
  }

  abort(): void {
    if (this.finished) {
      return;
    }
    this.finished = true;
    this.aborted = true;
    this.forceStart?.();
    this.recorder?.abort();
    this.deps.track(null);
    // A recorder still waiting for a slot gives it back as soon as it gets it.
    void this.started?.then(
      () => this.releaseSlot(),
      () => this.releaseSlot(),
    );
    this.releaseSlot();
  }

  private backlog = (): RecorderBacklog =>
    this.recorder?.backlog ?? { frames: this.latest, encoding: 0, fromSpool: true, started: false };

  /** A failed start is reported by finish; until then the rejection is held, not unhandled. */
  private launch(slot: boolean): void {
    const started = this.start(slot);
    started.catch(() => undefined);
    this.started = started;
  }

  private start(slot: boolean): Promise<SessionRecorder> {
    const { id } = this.deps;
    this.deps.track(this.backlog);
    if (slot) {
      this.holdsSlot = true;
      const recorder = this.newRecorder(
        this.spoolMode(this.deps.fromSpool ? 'spool' : 'live'),
        false,
      );
      this.recorder = recorder;
      return recorder.start().then(() => recorder);
    }
    // No slot now: the frames wait in the spool; the recorder starts when a slot frees, or at
    // finish (finalizing must not wait behind sessions that hold slots while interrupted).
    const wait = this.deps.slots.wait();
    this.forceStart = () => wait.cancel();
    const marked =
      this.eagerSlot === null
        ? this.deps.rows
            .update({ id }, { status: 'pending', updatedAt: new Date() })
            .catch(() => undefined)
        : Promise.resolve();
    return wait.promise.then(async (gotSlot) => {
      this.holdsSlot = gotSlot;
      if (this.aborted) {
        throw new Error('recording aborted before it started');
      }
      await marked;
      if (!this.finished) {
        await this.deps.rows.update({ id }, { status: 'recording', updatedAt: new Date() });
      }
      // Without a slot (the session is finishing): beyond the node's encoder capacity.
      const recorder = this.newRecorder(this.spoolMode('spool'), !gotSlot);
      await recorder.start();
      this.recorder = recorder;
      recorder.durable();
      return recorder;
    });
  }

  /** A second recorder that encodes the whole spool, in the background CPU class if slotless. */
  private async rebuild(
    lastSeq: number,
    cues: PromiseLike<readonly TextCue[]>,
  ): ReturnType<SessionRecorder['finish']> {
    const recorder = this.newRecorder('spool', !this.holdsSlot);
    this.recorder = recorder;
    await recorder.start();
    recorder.durable();
    return recorder.finish(lastSeq, cues);
  }

  /** A following recording reads the spool whatever the mode would be on the spool's own node. */
  private spoolMode(mode: 'live' | 'spool'): 'live' | 'spool' | 'follow' {
    return this.deps.following ? 'follow' : mode;
  }

  private newRecorder(mode: 'live' | 'spool' | 'follow', background: boolean): SessionRecorder {
    const recorder = this.deps.makeRecorder(mode, background, (err) => {
      if (this.recorder === recorder && !this.finished) {
        this.onRecorderFailed(err);
      }
    });
    return recorder;
  }

  /**
   * The recorder failed while the session streams. The session goes on (its frames keep being
   * stored and acknowledged); the row says `failed` with the reason now, the encoder slot goes to
   * another session, and the spool stays, so `finish` or a recovery can rebuild the recording.
   */
  private onRecorderFailed(err: Error): void {
    const level = isDiskFull(err) ? 'warn' : 'error';
    this.deps.logger[level]({ sessionId: this.deps.sessionId, err }, 'recorder failed');
    this.releaseSlot();
    void this.markFailed(err.message);
  }

  private async markFailed(reason: string): Promise<void> {
    await this.deps.rows
      .update(
        { id: this.deps.id },
        { status: 'failed', failureReason: reason.slice(0, 1000), updatedAt: new Date() },
      )
      .catch((err: unknown) =>
        this.deps.logger.warn(
          { sessionId: this.deps.sessionId, err },
          'could not mark the recording failed',
        ),
      );
  }

  private releaseSlot(): void {
    if (this.holdsSlot) {
      this.holdsSlot = false;
      this.deps.slots.release();
    }
  }
}
