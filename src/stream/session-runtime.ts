import { randomUUID } from 'node:crypto';
import type { Logger } from '@nestjs/common';
import type { AuditWriter } from '../audit/audit-writer.service';
import type { AppConfig } from '../config/config';
import {
  type MediaHeader,
  ptsPlausible,
  refusedRecord,
  type StoredHeader,
  Track,
} from '../protocol/media-header';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import type { RecordingHandle } from '../media/recording.service';
import type { Histogram } from '../metrics/prometheus';
import type { RecorderEvents } from '../media/session-recorder';
import type { Closed, ClosedRecording, KeyframeReason, ServerMessage } from '../protocol/messages';
import type { Opened } from '../protocol/open-session.schema';
import type { SessionCounts, SessionStats, SessionStore } from '../sessions/session-store.service';
import type { MessageDirection } from '../sessions/session-message.entity';
import type { AudioSettings, SessionStatus, VideoSettings } from '../sessions/session.types';
import { isDiskFull } from '../spool/free-space';
import { SpoolWriter } from '../spool/spool';
import type { ChunkGate } from './chunk-gate';

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
  /**
   * The session cannot go on here: end with the error's close code (1011 for a spool failure,
   * 1013 for a full disk) so the client resumes later.
   */
  failed(error: AppError): void;
  /**
   * The node caps the session's frame rate (`maxFps`, with the reason for the client's `flow`), or
   * lifts its cap (null). A client that stays over a cap past the flow grace period gets 4029.
   */
  throttle(maxFps: number | null, reason: string): void;
}

/** The node's cap on one session's frame rate, and why. */
export interface FpsCeiling {
  maxFps: number;
  reason: string;
}

/**
 * `implausible_pts`: refused by the pts rule, not stored; the seq is still expected (the client
 * resends from it with a plausible pts), and frames after it are dropped until it comes.
 * `stopping`: the spool just failed and the session is being stopped; the frame is not stored.
 * `refused`: a compressed chunk failed its bitstream checks (`bad_frame`, reason in
 * `refusal`): its seq is settled by a tombstone in the spool, it is not recorded.
 */
export type IngestResult =
  'stored' | 'refused' | 'duplicate' | 'gap' | 'implausible_pts' | 'failed' | 'stopping';

/** Retry-After for a session stopped because the disk is full. */
const DISK_FULL_RETRY_S = 30;

/** Between writes of an interruption the database did not take. */
const ROW_RETRY_MS = 1_000;

function movedAwayError(): AppError {
  return new AppError(ErrorCode.Conflict, 'the session was resumed on another node');
}

function diskFullError(): AppError {
  return new AppError(ErrorCode.InsufficientStorage, 'the disk is full; resume later', {
    retryAfterS: DISK_FULL_RETRY_S,
  });
}

/** `flow` reason of a cap for images costing more than the session's image budget. */
const IMAGE_BUDGET = 'image_budget';

/** Queued bytes after which the spool is written (not synced) early, bounding memory. */
const EARLY_WRITE_BYTES = 4 * 1024 * 1024;

/** Node-wide counters since start, for /metrics. */
export interface IngestTotals {
  frames: number;
  bytes: number;
  acks: number;
  /** Observes each merged ack's latency (seconds): the wait of the oldest frame it covers. */
  ackLatency: Pick<Histogram, 'observe'>;
  /** Observes each spool sync's duration (seconds). */
  spoolSync: Pick<Histogram, 'observe'>;
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
  /**
   * Whether this node still holds its lease (heartbeat younger than NODE_DEAD_AFTER_MS), so that
   * no other node may have taken its sessions. Checked before each spool write (per sync, not per
   * frame).
   */
  leaseHeld(): boolean;
  /** The lease is found lapsed before the lapse was reported: every session lets go now. */
  leaseLost(): void;
}

/** Media records of a session by track, with their bytes (messages as received, header included). */
export interface TrackCounts {
  video: number;
  audio: number;
  bytes: number;
}

/** A spool's records by track (`SpoolWriter.recovered` or a scan's summary), as a runtime counts them. */
export function storedIn(spool: {
  records: number;
  audioRecords: number;
  messageBytes: number;
}): TrackCounts {
  return {
    video: spool.records - spool.audioRecords,
    audio: spool.audioRecords,
    bytes: spool.messageBytes,
  };
}

export interface RuntimeInit {
  id: string;
  subject: string;
  channel: string;
  resumeTokenHash: string;
  status: SessionStatus;
  /**
   * What the session's spool holds: its highest seq, its records by track and their bytes. Read
   * from the spool itself (never from the row, which is written once a second), so counters are
   * right after any crash. Bad images among them are counted again as the recorder rebuilds the
   * recording from the spool.
   */
  lastSeq: number;
  stored: TrackCounts;
  /** Highest pts among the stored frames (0 for a new session), for the pts rule. */
  highestPts: number;
  /** For an interrupted session: when its window opened. */
  interruptedAt: Date | null;
  /** The session's `media_origin_at` (null before its first frame was stored, or if it was lost). */
  mediaOrigin: Date | null;
  /** What the session declared and the channel accepted: `opened.media`. */
  media: Opened['media'];
  /** The video and audio the session declared in `open`. */
  video: VideoSettings;
  audio: AudioSettings | null;
  /** The bitstream rules of a compressed session (null for JPEG and PCM). */
  gate: ChunkGate | null;
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
  /** `opened.media`: the session's codecs and the channel's limits when it opened or resumed. */
  media: Opened['media'];
  readonly video: VideoSettings;
  readonly audio: AudioSettings | null;
  status: SessionStatus;
  private readonly gate: ChunkGate | null;

  /** Highest seq accepted and queued to the spool. */
  private receivedSeq: number;
  /** Highest seq fdatasync'd. */
  private durableSeq: number;
  /** Highest seq acknowledged to the attached sink. */
  private ackedSeq: number;
  /**
   * What the spool durably holds: records of each track and their bytes. They move only when a
   * sync completes (to what was appended before it started), so every count is of frames stored,
   * never of frames still in memory that a crash or a full disk would lose.
   */
  private stored: TrackCounts;
  /** The same, for every frame accepted so far (stored or still queued for the spool). */
  private readonly accepted: TrackCounts;
  /** Stored video records the recorder refused as `bad_image` (not in the recording). */
  private rejectedFrames = 0;
  /**
   * Seqs refused as `bad_image` that were not yet durable when reported; counted once they are.
   * Bounded by the frames between two syncs.
   */
  private readonly rejectedAhead: number[] = [];
  private dirty = false;
  /** Highest pts stored, for the pts rule. */
  private highestPts: number;
  /** A frame was refused by the pts rule: later seqs are dropped until it is resent. */
  private ptsRefused = false;

  private sink: SessionSink | null = null;
  /**
   * The node's caps on the frame rate, by reason (capacity, image cost, encoder backlog); the
   * lowest applies, and a transport attached later starts under it.
   */
  private readonly ceilings = new Map<string, number>();
  private ceiling: FpsCeiling | null = null;
  private framesSinceAck = 0;
  /** When the first frame the next merged ack covers arrived (performance.now()). */
  private batchStartedAt = 0;
  private lastAckAt = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private windowTimer: NodeJS.Timeout | undefined;
  /**
   * The row still says `open` though the transport went away: the database did not take the
   * interruption. Written again until it does (`rowRetry`), so the row can be abandoned when the
   * window passes; a resume or an end meanwhile accepts either state.
   */
  private rowStillOpen = false;
  private rowRetry: NodeJS.Timeout | undefined;
  private rowWrite: Promise<unknown> | null = null;
  private broken = false;
  /** The session left this node (taken over elsewhere, or this node lost its lease). */
  private movedAway = false;
  /** The disk filled up: the final ack and 1013 are on their way. */
  private stopping = false;
  /** Last time anything arrived, for idle HTTP-attached sessions. */
  lastActivityAt = Date.now();

  private readonly intervalMs: number;
  private readonly maxFrames: number;

  private recording: RecordingHandle | null = null;

  /**
   * Wall-clock ms of capture time 0: the first frame's arrival minus its pts (docs/recording.md,
   * "Messages"). Null until a frame arrives when the session has none stored with it yet.
   */
  private mediaOrigin: number | null;
  /** `mediaOrigin` is in the session's row (a restart goes on with the same timeline). */
  private mediaOriginSaved: boolean;
  private mediaOriginWrite: Promise<void> | null = null;
  /** Messages go into the recording until the session starts to end. */
  private timingMessages = true;
  /** Message writes under way: the recording is finalized once they are stored. */
  private readonly messageWrites = new Set<Promise<void>>();

  constructor(
    private readonly deps: RuntimeDeps,
    init: RuntimeInit,
    private readonly spool: SpoolWriter,
  ) {
    this.id = init.id;
    this.subject = init.subject;
    this.channel = init.channel;
    this.resumeTokenHash = init.resumeTokenHash;
    this.media = init.media;
    this.video = init.video;
    this.audio = init.audio;
    this.gate = init.gate;
    this.status = init.status;
    this.receivedSeq = init.lastSeq;
    this.durableSeq = init.lastSeq;
    this.ackedSeq = init.lastSeq;
    this.stored = { ...init.stored };
    this.accepted = { ...init.stored };
    // A rehydrated session's counters differ from its row whenever the row missed a flush.
    this.dirty = init.stored.video + init.stored.audio > 0;
    this.highestPts = init.highestPts;
    this.mediaOrigin = init.mediaOrigin?.getTime() ?? null;
    this.mediaOriginSaved = init.mediaOrigin !== null;
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
      this.countRejected(seq);
      this.sink?.send({ type: 'error', code: ErrorCode.BadImage, message: reason, seq });
    },
    onRefused: (seq) => this.countRejected(seq),
    onBacklog: (behind) => {
      // Half of what it may send now (under any other cap), until the encoder has caught up.
      const fps = this.ceiling?.maxFps ?? this.deps.config.STREAM_MAX_FPS;
      this.limitFps('encoder_backlog', behind ? Math.max(1, Math.floor(fps / 2)) : null);
    },
    onImageCost: (maxFps) => {
      // Caps by reason: a lower one (capacity) still applies, and outlives this one.
      this.limitFps(IMAGE_BUDGET, maxFps);
    },
  };

  /** A stored frame is not in the recording: counted now if durable, else once it is. */
  private countRejected(seq: number): void {
    if (seq <= this.durableSeq) {
      this.rejectedFrames++;
    } else {
      this.rejectedAhead.push(seq);
    }
    this.dirty = true;
  }

  get attached(): SessionSink | null {
    return this.sink;
  }

  get fpsCeiling(): FpsCeiling | null {
    return this.ceiling;
  }

  /**
   * Caps the session's frame rate for `reason` (or lifts that cap: null). The lowest cap applies;
   * the attached transport is told when it changes.
   */
  limitFps(reason: string, maxFps: number | null): void {
    if (maxFps === null) {
      this.ceilings.delete(reason);
    } else {
      this.ceilings.set(reason, maxFps);
    }
    let lowest: FpsCeiling | null = null;
    for (const [why, fps] of this.ceilings) {
      if (lowest === null || fps < lowest.maxFps) {
        lowest = { maxFps: fps, reason: why };
      }
    }
    const was = this.ceiling;
    if (was?.maxFps === lowest?.maxFps && was?.reason === lowest?.reason) {
      return;
    }
    this.ceiling = lowest;
    this.sink?.throttle(lowest?.maxFps ?? null, lowest?.reason ?? 'recovered');
  }

  /** Its spool failed: it accepts nothing more and is about to leave the registry. */
  get failing(): boolean {
    return this.broken;
  }

  /** It is leaving this node (handOff): another node owns or is about to own it. */
  get leaving(): boolean {
    return this.movedAway;
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

  /**
   * Media messages durably stored: the spool's records (recorded video, audio, and images refused
   * as `bad_image`).
   */
  get frames(): number {
    return this.stored.video + this.stored.audio;
  }

  /** Durable counters, as `closed`, the session row and the audit trail report them. */
  get counts(): SessionCounts {
    return {
      lastSeq: this.durableSeq,
      videoFrames: this.stored.video - this.rejectedFrames,
      audioFrames: this.stored.audio,
      rejectedFrames: this.rejectedFrames,
      bytesIn: this.stored.bytes,
    };
  }

  /** Drops the runtime at process shutdown: the spool is closed, the encoder stopped. */
  async release(): Promise<void> {
    clearTimeout(this.ackTimer);
    clearTimeout(this.windowTimer);
    clearTimeout(this.rowRetry);
    this.recording?.abort();
    await this.spool.close().catch(() => undefined);
  }

  /**
   * One media message, per the sequence rule: a seq at or below the last accepted is a duplicate
   * (a resend after resume) and is dropped; anything but last + 1 is a gap. Then the pts rule: an
   * implausible pts is refused and not stored, and its seq stays the one expected, so the frames
   * the client sent after it are dropped (not a gap) until it resends from that seq. Hot path: no
   * await, no allocation beyond the spool's record prefix.
   */
  ingest(message: Buffer, header: MediaHeader): IngestResult {
    if (this.broken) {
      return this.stopping ? 'stopping' : 'failed';
    }
    const seq = header.seq;
    if (seq <= this.receivedSeq) {
      return 'duplicate';
    }
    if (seq !== this.receivedSeq + 1) {
      return this.ptsRefused ? 'duplicate' : 'gap';
    }
    if (!ptsPlausible(this.highestPts, header.pts)) {
      this.ptsRefused = true;
      return 'implausible_pts';
    }
    this.ptsRefused = false;
    if (header.pts > this.highestPts) {
      this.highestPts = header.pts;
    }
    let record = message;
    let stored: MediaHeader | StoredHeader = header;
    let result: IngestResult = 'stored';
    if (this.gate !== null && this.gate.admit(message, header, this.askKeyframe) === 'refused') {
      record = refusedRecord(message);
      stored = { ...header, refused: true };
      result = 'refused';
    }
    try {
      this.spool.append(record);
    } catch (err) {
      // The writer failed and its rejection has not reached `fail` yet: same outcome, now.
      this.fail(err);
      return this.stopping ? 'stopping' : 'failed';
    }
    this.recording?.offer(record, stored);
    if (this.mediaOrigin === null) {
      this.mediaOrigin = Date.now() - header.pts;
    }
    this.receivedSeq = seq;
    if (header.track === Track.Video) {
      this.accepted.video++;
    } else {
      this.accepted.audio++;
    }
    this.accepted.bytes += record.length;
    this.deps.totals.frames++;
    this.deps.totals.bytes += message.length;
    this.dirty = true;
    if (this.framesSinceAck === 0) {
      this.batchStartedAt = performance.now();
    }
    this.framesSinceAck++;
    if (this.framesSinceAck >= this.maxFrames) {
      this.flushAck();
    } else if (this.ackTimer === undefined) {
      const due = this.lastAckAt + this.intervalMs - Date.now();
      this.ackTimer = setTimeout(this.flushAck, due > 0 ? due : 0);
    }
    if (this.spool.pendingBytes > EARLY_WRITE_BYTES && this.deps.leaseHeld()) {
      this.spool.write().catch((err: unknown) => this.fail(err));
    }
    return result;
  }

  /** Whether the session's video is compressed: its chunks may carry the key-frame flag. */
  get compressed(): boolean {
    return this.gate !== null;
  }

  /** Why the last `refused` chunk was refused (the `bad_frame` message). */
  get refusal(): string {
    return this.gate?.refusal ?? '';
  }

  /** The key frame the server wants next (for the HTTP frames answer), or null. */
  get keyframeWanted(): KeyframeReason | null {
    return this.gate?.keyframeWanted ?? null;
  }

  /**
   * The session was resumed on `sink` (after `opened` went out): a compressed session asks for a
   * key frame, since the client's encoder may have restarted and the recording resumes cleanly
   * from one.
   */
  resumedOn(sink: SessionSink): void {
    this.gate?.resumed((reason) => sink.send({ type: 'keyframe', reason }));
  }

  private readonly askKeyframe = (reason: KeyframeReason): void => {
    this.sink?.send({ type: 'keyframe', reason });
  };

  /**
   * Makes everything accepted durable now; resolves with the durable seq. A full disk rejects
   * with `insufficient_storage` (503 / 1013), so callers answer it like any refusal.
   */
  syncNow(): Promise<number> {
    if (this.movedAway) {
      return Promise.reject(movedAwayError());
    }
    return this.syncSpool().catch((err: unknown) => {
      this.fail(err);
      throw isDiskFull(err) ? diskFullError() : err;
    });
  }

  private async syncSpool(): Promise<number> {
    if (!this.deps.leaseHeld()) {
      // A process that was paused runs its I/O before the timer that reports the lapse.
      this.deps.leaseLost();
    }
    if (this.movedAway) {
      throw movedAwayError();
    }
    // The sync covers exactly what was appended before it starts: that is what becomes stored.
    const target = this.receivedSeq;
    const { video, audio, bytes } = this.accepted;
    const started = performance.now();
    await this.spool.sync();
    this.deps.totals.spoolSync.observe((performance.now() - started) / 1000);
    if (target > this.durableSeq) {
      this.durableSeq = target;
      this.stored = { video, audio, bytes };
      this.dirty = true;
      this.countRejectedUpTo(target);
      this.recording?.durable();
    }
    if (!this.mediaOriginSaved && this.durableSeq > 0) {
      this.saveMediaOrigin();
    }
    return this.durableSeq;
  }

  /**
   * Writes `mediaOrigin` to the row once the frame it comes from is durable: one write per
   * session, never per frame. A failed write is tried again after the next sync.
   */
  private saveMediaOrigin(): void {
    const origin = this.mediaOrigin;
    if (origin === null || this.mediaOriginWrite) {
      return;
    }
    this.mediaOriginWrite = this.deps.store
      .saveMediaOrigin(this.id, new Date(origin))
      .then(
        () => {
          this.mediaOriginSaved = true;
        },
        (err: unknown) =>
          this.deps.logger.warn(
            { err, sessionId: this.id },
            'media origin not saved; retrying after the next sync',
          ),
      )
      .finally(() => {
        this.mediaOriginWrite = null;
      });
  }

  /**
   * Where a message arriving now sits on the recording's timeline: its arrival minus the media
   * origin, in ms. Without an origin, at the latest capture time stored (0 before any frame): a
   * node that lost the origin in a crash places a message after everything it holds until the next
   * frame gives it the origin again.
   */
  private recordingTimeMs(now: number): number {
    return this.mediaOrigin === null
      ? this.highestPts
      : Math.max(0, Math.round(now - this.mediaOrigin));
  }

  /**
   * Stores a business message of this session (from the client, or pushed by the API), timed into
   * the recording while the session has not started to end; outside it afterwards.
   */
  async storeMessage(
    direction: MessageDirection,
    clientId: string,
    body: unknown,
    sender: string,
  ): Promise<void> {
    const now = Date.now();
    const write = this.deps.store.storeMessage(
      this.id,
      direction,
      clientId,
      body,
      sender,
      new Date(now),
      this.timingMessages ? this.recordingTimeMs(now) : null,
    );
    this.messageWrites.add(write);
    try {
      await write;
    } finally {
      this.messageWrites.delete(write);
    }
  }

  /**
   * From here on messages are not timed into the recording; resolves once those that are have
   * been written (or failed), so the recording finalized next reads every one of them.
   */
  private async stopTimingMessages(): Promise<void> {
    this.timingMessages = false;
    await Promise.allSettled([...this.messageWrites]);
  }

  /** Bad images reported before their frame was durable count once it is. */
  private countRejectedUpTo(seq: number): void {
    if (this.rejectedAhead.length === 0) {
      return;
    }
    let kept = 0;
    for (const ahead of this.rejectedAhead) {
      if (ahead <= seq) {
        this.rejectedFrames++;
      } else {
        this.rejectedAhead[kept++] = ahead;
      }
    }
    this.rejectedAhead.length = kept;
  }

  /** The merged ack: one group fdatasync, then one ack covering everything it made durable. */
  private readonly flushAck = (): void => {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.framesSinceAck = 0;
    this.lastAckAt = Date.now();
    const batchStartedAt = this.batchStartedAt;
    this.syncSpool().then(
      (durable) => {
        const sink = this.sink;
        if (sink && durable > this.ackedSeq) {
          this.ackedSeq = durable;
          this.deps.totals.acks++;
          this.deps.totals.ackLatency.observe((performance.now() - batchStartedAt) / 1000);
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
      clearTimeout(this.rowRetry);
      await this.rowWrite;
      try {
        await this.deps.store.transition(
          this.id,
          this.rowStillOpen ? ['interrupted', 'open'] : ['interrupted'],
          'open',
          cause,
          new Date(),
          this.deps.config.NODE_ID,
        );
      } catch (err) {
        // Not resumed (the database is down): still interrupted, with a window that runs again,
        // and no transport, so the client's next resume is judged afresh.
        if (this.sink === sink) {
          this.sink = null;
        }
        this.startWindow(this.deps.config.RESUME_WINDOW_MS);
        if (this.rowStillOpen) {
          this.retryInterrupted(cause, new Date());
        }
        throw err;
      }
      this.status = 'open';
      this.rowStillOpen = false;
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
      await this.syncSpool();
    } catch (err) {
      this.fail(err);
    }
    // A full disk moves the session to interrupted itself, after its final ack.
    if (this.status === 'open' && !this.stopping) {
      this.status = 'interrupted';
      // Before the write: the window runs whatever the database says (bench:soak, 2026-12-03:
      // sessions whose write failed in a pool storm had no window and stayed open for good).
      this.startWindow(this.deps.config.RESUME_WINDOW_MS);
      const at = new Date();
      try {
        await this.writeInterrupted(cause, at);
      } catch (err) {
        this.rowStillOpen = true;
        this.retryInterrupted(cause, at);
        throw err;
      }
    }
    this.event('detached', sink.connectionId, { transport: sink.transport, cause });
  }

  private async writeInterrupted(cause: string, at: Date): Promise<void> {
    const write = this.deps.store.transition(
      this.id,
      ['open'],
      'interrupted',
      cause,
      at,
      this.deps.config.NODE_ID,
    );
    this.rowWrite = write.catch(() => undefined);
    try {
      await write;
    } finally {
      this.rowWrite = null;
    }
  }

  /** Writes the interruption again, each second, while the session stays interrupted here. */
  private retryInterrupted(cause: string, at: Date): void {
    clearTimeout(this.rowRetry);
    this.rowRetry = setTimeout(() => {
      if (!this.rowStillOpen || this.status !== 'interrupted' || this.sink !== null) {
        return;
      }
      this.writeInterrupted(cause, at).then(
        () => {
          this.rowStillOpen = false;
        },
        () => this.retryInterrupted(cause, at),
      );
    }, ROW_RETRY_MS);
    this.rowRetry.unref();
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
    await this.stopTimingMessages();
    await this.finalAck();
    const recording = await this.finishRecording();
    await this.end('closed', cause);
    return { sessionId: this.id, frames: this.frames, recording };
  }

  /** The resume window passed: the session ends with what was stored, recording finalized. */
  async abandon(): Promise<void> {
    if (this.status === 'interrupted') {
      await this.stopTimingMessages();
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

  /**
   * The session leaves this node: another node takes it over, or this node's lease lapsed. From
   * this call on nothing more is accepted (ingest answers `failed`); the transport is ended by
   * `endSink` (4009 or 1012), the recorder stopped, and the spool closed: its pending writes made
   * durable first while this node still holds the session, or dropped (`discard`, never acked)
   * once the lease lapsed, when another node may be writing it already. Resolves once this node
   * can write nothing more to the spool; the next owner reads everything from it (the row's
   * status and counters are its to set).
   */
  async handOff(
    endSink: (sink: SessionSink) => void,
    cause: string,
    discard = false,
  ): Promise<void> {
    if (this.movedAway) {
      return;
    }
    this.movedAway = true;
    this.broken = true;
    clearTimeout(this.ackTimer);
    clearTimeout(this.windowTimer);
    this.ackTimer = undefined;
    this.windowTimer = undefined;
    const sink = this.sink;
    this.sink = null;
    if (sink) {
      endSink(sink);
    }
    this.recording?.abort();
    try {
      await (discard ? this.spool.discard() : this.spool.close());
    } catch (err) {
      // Whatever did not reach the disk was never acked; the next owner's scan cuts a torn tail.
      this.deps.logger.warn({ err, sessionId: this.id }, 'spool not synced while handing off');
    }
    this.event('handed_off', sink?.connectionId ?? null, { cause, lastSeq: this.durableSeq });
    this.deps.onEnded(this);
  }

  /** Counters for the batched stats write; clears the dirty flag. */
  takeStats(): SessionStats | null {
    if (!this.dirty) {
      return null;
    }
    this.dirty = false;
    return { id: this.id, ...this.counts };
  }

  /** A write of `takeStats` failed: the counters are written again with the next flush. */
  statsNotSaved(): void {
    this.dirty = true;
  }

  private async end(status: 'closed' | 'abandoned', cause: string): Promise<void> {
    clearTimeout(this.ackTimer);
    clearTimeout(this.windowTimer);
    this.ackTimer = undefined;
    this.windowTimer = undefined;
    clearTimeout(this.rowRetry);
    await this.rowWrite;
    const from: SessionStatus[] =
      status === 'closed' || this.rowStillOpen ? ['open', 'interrupted'] : ['interrupted'];
    const before = this.status;
    this.status = status;
    await this.spool.close();
    try {
      // The last counters go with the status: one statement at the end, not two.
      this.dirty = false;
      await this.deps.store.end(
        this.id,
        from,
        status,
        cause,
        new Date(),
        this.deps.config.NODE_ID,
        this.counts,
      );
    } catch (err) {
      // The database did not take the end: the session stays what its row says. This runtime,
      // its spool closed, is dropped, so a resume rebuilds the session from its spool (or the
      // sweeper abandons it) once the database is back.
      this.status = before;
      this.sink = null;
      this.deps.onEnded(this);
      throw err;
    }
    this.sink = null;
    this.event(status, null, { cause, frames: this.frames, ...this.counts });
    this.deps.onEnded(this);
  }

  private startWindow(ms: number): void {
    clearTimeout(this.windowTimer);
    this.windowTimer = setTimeout(() => this.deps.onWindowPassed(this), ms);
    this.windowTimer.unref();
  }

  /**
   * A spool write failed: nothing more is accepted here; the client resumes elsewhere or later.
   * The recorder stops (a resume or the abandonment rebuilds the recording from the spool).
   */
  private fail(err: unknown): void {
    if (this.broken) {
      return;
    }
    this.broken = true;
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.recording?.abort();
    if (isDiskFull(err)) {
      this.stopping = true;
      void this.stopOnFullDisk(err);
      return;
    }
    this.deps.logger.error({ err, sessionId: this.id }, 'session spool failed');
    const sink = this.sink;
    this.sink = null;
    sink?.failed(new AppError(ErrorCode.Internal, 'session storage failed'));
    void this.spool.close().catch(() => undefined);
    this.deps.onEnded(this);
  }

  /**
   * The disk is full. A failed spool writer cannot say what reached the disk, so the spool is
   * reopened: its scan keeps the intact records (a torn tail is cut) and makes them durable. The
   * client gets `flow`, a final ack of exactly those records, and 1013; the session becomes
   * `interrupted`, its spool stays, and a resume (once there is space) rehydrates it from the
   * spool. Nothing of this takes the process down.
   */
  private async stopOnFullDisk(err: unknown): Promise<void> {
    this.deps.logger.warn({ err, sessionId: this.id }, 'disk full: session stopped, spool kept');
    const sink = this.sink;
    sink?.send({ type: 'flow', maxFps: 0, reason: ErrorCode.InsufficientStorage });
    let stored = this.durableSeq;
    try {
      await this.spool.close().catch(() => undefined);
      const reopened = await SpoolWriter.open(this.spool.path);
      await reopened.close();
      // Frames accepted after the last intact record are gone: count what the spool holds.
      const held = reopened.recovered;
      stored = held.lastSeq;
      this.countRejectedUpTo(stored);
      this.rejectedAhead.length = 0;
      this.stored = storedIn(held);
      this.rejectedFrames = Math.min(this.rejectedFrames, this.stored.video);
      this.receivedSeq = stored;
      this.dirty = true;
    } catch (reopenErr) {
      // Only what an fdatasync confirmed is known to be stored.
      this.deps.logger.error(
        { err: reopenErr, sessionId: this.id },
        'spool could not be reopened after a full disk',
      );
    }
    this.durableSeq = stored;
    if (sink && this.sink === sink) {
      this.sink = null;
      // Always sent, even when it repeats the last ack: the client learns where it stands
      // between the `flow` and the close.
      this.ackedSeq = Math.max(this.ackedSeq, stored);
      sink.ack(stored);
      sink.failed(diskFullError());
    }
    try {
      const stats = this.takeStats();
      if (stats) {
        await this.deps.store.saveStats([stats]);
      }
      if (this.status === 'open') {
        this.status = 'interrupted';
        await this.deps.store.transition(this.id, ['open'], 'interrupted', 'insufficient_storage');
      }
      this.event('detached', sink?.connectionId ?? null, {
        transport: sink?.transport ?? null,
        cause: 'insufficient_storage',
        lastSeq: stored,
      });
    } catch (storeErr) {
      this.deps.logger.warn(
        { err: storeErr, sessionId: this.id },
        'counters or status not saved after a full disk; a resume or restart does it',
      );
    } finally {
      this.deps.onEnded(this);
    }
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
