import { randomUUID } from 'node:crypto';
import type { Logger } from '@nestjs/common';
import type { AuditWriter } from '../audit/audit-writer.service';
import type { AppConfig } from '../config/config';
import { type MediaHeader, Track } from '../protocol/media-header';
import { ErrorCode } from '../common/error-code';
import type { RecordingHandle } from '../media/recording.service';
import type { RecorderEvents } from '../media/session-recorder';
import type { Closed, ClosedRecording, ServerMessage } from '../protocol/messages';
import type { SessionStats, SessionStore } from '../sessions/session-store.service';
import type { SessionStatus } from '../sessions/session.types';
import type { SpoolWriter } from '../spool/spool';

/** The transport a session is attached to: a WebSocket connection or the HTTP fallback. */
export interface SessionSink {
  readonly transport: 'ws' | 'http';
  /** Connection id for audits (null for HTTP). */
  readonly connectionId: string | null;
  /** Cumulative acknowledgement; cheap, called once per merged ack. */
  ack(seq: number): void;
  send(message: ServerMessage): void;
  /** The session moved to another connection: end this one with 4009. */
  replaced(): void;
  /** The session cannot go on here (spool failure): end with 1011 so the client resumes. */
  failed(): void;
}

export type IngestResult = 'stored' | 'duplicate' | 'gap' | 'failed';

/** Queued bytes after which the spool is written (not synced) early, bounding memory. */
const EARLY_WRITE_BYTES = 4 * 1024 * 1024;

/** Node-wide counters since start, for /metrics. */
export interface IngestTotals {
  frames: number;
  bytes: number;
  acks: number;
}

export interface RuntimeDeps {
  totals: IngestTotals;
  config: AppConfig;
  store: SessionStore;
  audit: AuditWriter;
  logger: Logger;
  /** Called once the runtime ended (closed, abandoned or failed), to forget it. */
  onEnded(runtime: SessionRuntime): void;
  /** Called when an interrupted session's resume window passes. */
  onWindowPassed(runtime: SessionRuntime): void;
}

export interface RuntimeInit {
  id: string;
  subject: string;
  channel: string;
  resumeTokenHash: string;
  status: SessionStatus;
  lastSeq: number;
  videoFrames: number;
  audioFrames: number;
  rejectedFrames: number;
  bytesIn: number;
  /** For an interrupted session: when its window opened. */
  interruptedAt: Date | null;
}

/**
 * The live state of one session on this node, shared by both transports (one code path): the
 * sequence rule, the spool with its group fdatasync, the merged-ack rule, counters, and the
 * lifecycle open → interrupted → open | abandoned → closed.
 */
export class SessionRuntime {
  readonly id: string;
  readonly subject: string;
  readonly channel: string;
  readonly resumeTokenHash: string;
  status: SessionStatus;

  /** Highest seq accepted and queued to the spool. */
  private receivedSeq: number;
  /** Highest seq fdatasync'd. */
  private durableSeq: number;
  /** Highest seq acknowledged to the attached sink. */
  private ackedSeq: number;
  private videoFrames: number;
  private audioFrames: number;
  private rejectedFrames: number;
  private bytesIn: number;
  private dirty = false;

  private sink: SessionSink | null = null;
  private framesSinceAck = 0;
  private lastAckAt = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private windowTimer: NodeJS.Timeout | undefined;
  private broken = false;
  /** Last time anything arrived, for idle HTTP-attached sessions. */
  lastActivityAt = Date.now();

  private readonly intervalMs: number;
  private readonly maxFrames: number;

  private recording: RecordingHandle | null = null;

  constructor(
    private readonly deps: RuntimeDeps,
    init: RuntimeInit,
    private readonly spool: SpoolWriter,
  ) {
    this.id = init.id;
    this.subject = init.subject;
    this.channel = init.channel;
    this.resumeTokenHash = init.resumeTokenHash;
    this.status = init.status;
    this.receivedSeq = init.lastSeq;
    this.durableSeq = init.lastSeq;
    this.ackedSeq = init.lastSeq;
    this.videoFrames = init.videoFrames;
    this.audioFrames = init.audioFrames;
    this.rejectedFrames = init.rejectedFrames;
    this.bytesIn = init.bytesIn;
    this.intervalMs = deps.config.ACK_INTERVAL_MS;
    this.maxFrames = deps.config.ACK_MAX_FRAMES;
    if (init.status === 'interrupted') {
      const opened = init.interruptedAt?.getTime() ?? Date.now();
      this.startWindow(Math.max(0, opened + deps.config.RESUME_WINDOW_MS - Date.now()));
    }
  }

  /** Connects the session's recorder; every frame stored from now on is offered to it. */
  setRecording(recording: RecordingHandle): void {
    this.recording = recording;
  }

  /** The recorder's events: bad frames are reported with their seq, backlog becomes `flow`. */
  readonly recorderEvents: RecorderEvents = {
    onBadImage: (seq, reason) => {
      this.videoFrames--;
      this.rejectedFrames++;
      this.dirty = true;
      this.sink?.send({ type: 'error', code: ErrorCode.BadImage, message: reason, seq });
    },
    onBacklog: (behind) => {
      const fps = this.deps.config.STREAM_MAX_FPS;
      this.sink?.send(
        behind
          ? { type: 'flow', maxFps: Math.max(1, Math.floor(fps / 2)), reason: 'encoder_backlog' }
          : { type: 'flow', maxFps: fps, reason: 'recovered' },
      );
    },
  };

  get attached(): SessionSink | null {
    return this.sink;
  }

  /** Highest seq durably stored. */
  get lastSeq(): number {
    return this.durableSeq;
  }

  /** The seq the sequence rule expects next. */
  get nextSeq(): number {
    return this.receivedSeq + 1;
  }

  get maxFrameBytes(): number {
    return this.deps.config.MAX_FRAME_BYTES;
  }

  /** Media messages stored (recorded video, audio, and images refused as `bad_image`). */
  get frames(): number {
    return this.videoFrames + this.audioFrames + this.rejectedFrames;
  }

  /** Drops the runtime at process shutdown: the spool is closed, the encoder stopped. */
  async release(): Promise<void> {
    clearTimeout(this.ackTimer);
    clearTimeout(this.windowTimer);
    this.recording?.abort();
    await this.spool.close().catch(() => undefined);
  }

  /**
   * One media message, per the sequence rule: a seq at or below the last accepted is a duplicate
   * (a resend after resume) and is dropped; anything but last + 1 is a gap. Hot path: no await,
   * no allocation beyond the spool's record prefix.
   */
  ingest(message: Buffer, header: MediaHeader): IngestResult {
    if (this.broken) {
      return 'failed';
    }
    const seq = header.seq;
    if (seq <= this.receivedSeq) {
      return 'duplicate';
    }
    if (seq !== this.receivedSeq + 1) {
      return 'gap';
    }
    this.spool.append(message);
    this.recording?.offer(message, header);
    this.receivedSeq = seq;
    if (header.track === Track.Video) {
      this.videoFrames++;
    } else {
      this.audioFrames++;
    }
    this.bytesIn += message.length;
    this.deps.totals.frames++;
    this.deps.totals.bytes += message.length;
    this.dirty = true;
    this.framesSinceAck++;
    if (this.framesSinceAck >= this.maxFrames) {
      this.flushAck();
    } else if (this.ackTimer === undefined) {
      const due = this.lastAckAt + this.intervalMs - Date.now();
      this.ackTimer = setTimeout(this.flushAck, due > 0 ? due : 0);
    }
    if (this.spool.pendingBytes > EARLY_WRITE_BYTES) {
      this.spool.write().catch((err: unknown) => this.fail(err));
    }
    return 'stored';
  }

  /** Counts a frame that was refused (e.g. a bad image) but still acknowledged by its seq. */
  countRejected(): void {
    this.rejectedFrames++;
    this.dirty = true;
  }

  /** Makes everything accepted durable now; resolves with the durable seq. */
  async syncNow(): Promise<number> {
    const target = this.receivedSeq;
    await this.spool.sync();
    if (target > this.durableSeq) {
      this.durableSeq = target;
      this.recording?.durable();
    }
    return this.durableSeq;
  }

  /** The merged ack: one group fdatasync, then one ack covering everything it made durable. */
  private readonly flushAck = (): void => {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.framesSinceAck = 0;
    this.lastAckAt = Date.now();
    this.syncNow().then(
      (durable) => {
        const sink = this.sink;
        if (sink && durable > this.ackedSeq) {
          this.ackedSeq = durable;
          this.deps.totals.acks++;
          sink.ack(durable);
        }
      },
      (err: unknown) => this.fail(err),
    );
  };

  /**
   * Attaches a transport; a previous one is told it was replaced (4009). Persists the move back to
   * `open` when the session was interrupted. The caller then tells the client `lastSeq`.
   */
  async attach(sink: SessionSink, cause: string): Promise<number> {
    const previous = this.sink;
    this.sink = sink;
    this.lastActivityAt = Date.now();
    clearTimeout(this.windowTimer);
    this.windowTimer = undefined;
    if (previous && previous !== sink) {
      previous.replaced();
    }
    if (this.status === 'interrupted') {
      this.status = 'open';
      await this.deps.store.transition(this.id, ['interrupted'], 'open', cause);
    }
    const durable = await this.syncNow();
    this.ackedSeq = durable;
    this.event('attached', sink.connectionId, {
      transport: sink.transport,
      cause,
      lastSeq: durable,
    });
    return durable;
  }

  /**
   * The transport went away without `close`: make what arrived durable, become interrupted and
   * start the resume window. A no-op when another transport has taken over already.
   */
  async detach(sink: SessionSink, cause: string): Promise<void> {
    if (this.sink !== sink) {
      return;
    }
    this.sink = null;
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    try {
      await this.syncNow();
    } catch (err) {
      this.fail(err);
    }
    if (this.status === 'open') {
      this.status = 'interrupted';
      await this.deps.store.transition(this.id, ['open'], 'interrupted', cause);
      this.startWindow(this.deps.config.RESUME_WINDOW_MS);
    }
    this.event('detached', sink.connectionId, { transport: sink.transport, cause });
  }

  /** Final ack before a server-initiated close (drain): everything received is durable and acked. */
  async finalAck(): Promise<void> {
    const durable = await this.syncNow();
    const sink = this.sink;
    if (sink && durable > this.ackedSeq) {
      this.ackedSeq = durable;
      sink.ack(durable);
    }
  }

  /** Ends the session normally: durable, final ack, recording finalized, `closed`. */
  async close(cause: string): Promise<Closed> {
    await this.finalAck();
    const recording = await this.finishRecording();
    await this.end('closed', cause);
    return { sessionId: this.id, frames: this.frames, recording };
  }

  /** The resume window passed: the session ends with what was stored, recording finalized. */
  async abandon(): Promise<void> {
    if (this.status === 'interrupted') {
      await this.finishRecording();
      await this.end('abandoned', 'resume_window_passed');
    }
  }

  private async finishRecording(): Promise<ClosedRecording> {
    if (!this.recording) {
      return { id: null, status: 'pending', durationMs: null };
    }
    return this.recording.finish(this.durableSeq);
  }

  /** Counters for the batched stats write; clears the dirty flag. */
  takeStats(): SessionStats | null {
    if (!this.dirty) {
      return null;
    }
    this.dirty = false;
    return {
      id: this.id,
      lastSeq: this.durableSeq,
      videoFrames: this.videoFrames,
      audioFrames: this.audioFrames,
      rejectedFrames: this.rejectedFrames,
      bytesIn: this.bytesIn,
    };
  }

  /** The counters taken by a write that failed: the next flush writes them again. */
  markDirty(): void {
    this.dirty = true;
  }

  private async end(status: 'closed' | 'abandoned', cause: string): Promise<void> {
    clearTimeout(this.ackTimer);
    clearTimeout(this.windowTimer);
    this.ackTimer = undefined;
    this.windowTimer = undefined;
    const from: SessionStatus[] = status === 'closed' ? ['open', 'interrupted'] : ['interrupted'];
    this.status = status;
    await this.spool.close();
    this.dirty = true;
    const stats = this.takeStats();
    if (stats) {
      await this.deps.store.saveStats([stats]);
    }
    await this.deps.store.transition(this.id, from, status, cause);
    this.sink = null;
    this.event(status, null, { cause, frames: this.frames, lastSeq: this.durableSeq });
    this.deps.onEnded(this);
  }

  private startWindow(ms: number): void {
    clearTimeout(this.windowTimer);
    this.windowTimer = setTimeout(() => this.deps.onWindowPassed(this), ms);
    this.windowTimer.unref();
  }

  /** A spool write failed: nothing more is accepted here; the client resumes elsewhere or later. */
  private fail(err: unknown): void {
    if (this.broken) {
      return;
    }
    this.broken = true;
    this.deps.logger.error({ err, sessionId: this.id }, 'session spool failed');
    const sink = this.sink;
    this.sink = null;
    sink?.failed();
    void this.spool.close().catch(() => undefined);
    this.recording?.abort();
    this.deps.onEnded(this);
  }

  private event(type: string, connectionId: string | null, detail: Record<string, unknown>): void {
    this.deps.audit.record({
      kind: 'session_event',
      id: randomUUID(),
      sessionId: this.id,
      at: new Date(),
      type,
      connectionId,
      detail,
    });
  }
}
