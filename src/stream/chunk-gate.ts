import type { MediaHeader } from '../protocol/media-header';
import { MEDIA_HEADER_BYTES, Track } from '../protocol/media-header';
import type { KeyframeReason } from '../protocol/messages';

/** Checks one compressed video chunk (src/media/codecs): null when it may be stored, else why not. */
export interface VideoChunkCheck {
  check(chunk: Buffer, key: boolean): string | null;
}

/** Checks one Opus packet: null when it may be stored, else why not. */
export interface AudioPacketCheck {
  check(packet: Buffer): string | null;
}

/**
 * After this many key-frame intervals without a key frame, delta chunks are refused: the recorder
 * holds every chunk since the last key frame in memory (a fragment starts at a key frame), so a
 * client that ignores `keyframe` must not grow that without bound.
 */
export const KEYFRAME_HARD_LIMIT_INTERVALS = 4;
/** A `keyframe` request not answered within this is sent again. */
const KEYFRAME_RESEND_MS = 2_000;

/** What the gate says of one media message. */
export type GateVerdict = 'ok' | 'refused';

/**
 * The bitstream rules of one compressed session, applied to every media message before it is
 * stored (docs/protocol.md, "Compressed video"): each chunk passes its codec's checker; the
 * first video chunk, and the first after a refused one, must be a key frame; a stream that goes
 * `keyframeIntervalMs` without one is asked for one (`keyframe`), and one that goes
 * KEYFRAME_HARD_LIMIT_INTERVALS times that has its deltas refused. Hot path: no allocation and no
 * exception on an accepted chunk; the refusal's reason is a string built only when refusing.
 */
export class ChunkGate {
  /** Why the last refused chunk was refused (the `bad_frame` message). */
  refusal = '';
  /** A key frame the server wants next, and why (null once one arrived). */
  keyframeWanted: KeyframeReason | null = null;
  /** The reason was sent to the client at this time (Date.now()); 0 when not sent yet. */
  private keyframeAskedAt = 0;
  private awaitingKey: boolean;
  /** The seq whose refusal started the wait for a key frame (0: the session's start). */
  private refusedSeq = 0;
  /** Capture time (ms) of the last key frame accepted. */
  private lastKeyPts: number;

  constructor(
    private readonly video: VideoChunkCheck,
    private readonly audio: AudioPacketCheck | null,
    private readonly keyframeIntervalMs: number,
    /** Video chunks stored so far: a resumed session continues its chain of deltas. */
    storedVideo: number,
    highestPts: number,
  ) {
    this.awaitingKey = storedVideo === 0;
    this.lastKeyPts = highestPts;
  }

  /**
   * Whether the message may be stored. A refusal sets `refusal`, and `keyframeWanted` for video;
   * `ask` is called when a `keyframe` request is due (to send it now on WebSocket).
   */
  admit(message: Buffer, header: MediaHeader, ask: (reason: KeyframeReason) => void): GateVerdict {
    const payload = message.subarray(MEDIA_HEADER_BYTES);
    if (header.track === Track.Audio) {
      if (this.audio === null) {
        return 'ok';
      }
      const problem = this.audio.check(payload);
      if (problem === null) {
        return 'ok';
      }
      this.refusal = problem;
      return 'refused';
    }
    if (!header.key) {
      if (this.awaitingKey) {
        this.refusal =
          this.refusedSeq === 0
            ? 'the first video chunk must be a key frame'
            : `a key frame must follow the refused chunk ${this.refusedSeq}`;
        this.want('refused', ask);
        return 'refused';
      }
      const sinceKey = header.pts - this.lastKeyPts;
      if (sinceKey > this.keyframeIntervalMs * KEYFRAME_HARD_LIMIT_INTERVALS) {
        this.refusal =
          `no key frame for ${sinceKey} ms (a key frame is due every ` +
          `${this.keyframeIntervalMs} ms): send a key frame`;
        this.want('interval', ask);
        return 'refused';
      }
    }
    const problem = this.video.check(payload, header.key);
    if (problem !== null) {
      this.refusal = problem;
      if (!this.awaitingKey) {
        this.awaitingKey = true;
        this.refusedSeq = header.seq;
      }
      this.want('refused', ask);
      return 'refused';
    }
    if (header.key) {
      this.awaitingKey = false;
      this.refusedSeq = 0;
      this.lastKeyPts = header.pts;
      this.keyframeWanted = null;
      this.keyframeAskedAt = 0;
    } else if (header.pts - this.lastKeyPts > this.keyframeIntervalMs) {
      this.want('interval', ask);
    }
    return 'ok';
  }

  /** The session was resumed: the client's encoder may have restarted; ask for a key frame. */
  resumed(ask: (reason: KeyframeReason) => void): void {
    this.keyframeAskedAt = 0;
    this.want('resume', ask);
  }

  private want(reason: KeyframeReason, ask: (reason: KeyframeReason) => void): void {
    const now = Date.now();
    if (this.keyframeWanted !== null && now - this.keyframeAskedAt < KEYFRAME_RESEND_MS) {
      return;
    }
    this.keyframeWanted = reason;
    this.keyframeAskedAt = now;
    ask(reason);
  }
}
