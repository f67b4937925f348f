import { encodeMediaMessage, Track } from '../../src/protocol/media-header';

/** Where a frame or message left the client, and when its acknowledgement came back (Date.now()). */
export interface Sent {
  sentAt: number;
  ackedAt: number;
}

/**
 * A camera in real time: frame n is captured (pts) and sent at its own moment, `intervalMs` after
 * the previous one, so the server sees capture time and arrival advance together, as with a real
 * front end. Messages sent between frames then arrive at known points of the capture clock. The
 * pacing is the subject here (arrival times), not a wait for something to happen.
 */
export class Camera {
  /** Client wall-clock time of capture time 0 (the first frame). */
  readonly startedAt: number;
  private seq = 0;
  private stopped = false;

  constructor(
    private readonly send: (message: Buffer) => void,
    private readonly frames: readonly Buffer[],
    private readonly intervalMs = 100,
    startedAt = Date.now(),
  ) {
    this.startedAt = startedAt;
  }

  /** Sends frames at their capture times until `untilPts` (capture ms) has passed. */
  async runUntil(untilPts: number): Promise<void> {
    for (;;) {
      const pts = this.seq * this.intervalMs;
      if (pts > untilPts || this.stopped) {
        return;
      }
      const due = this.startedAt + pts;
      const wait = due - Date.now();
      if (wait > 0) {
        await new Promise((r) => setTimeout(r, wait));
      }
      this.seq++;
      this.send(
        encodeMediaMessage(Track.Video, this.seq, pts, this.frames[this.seq % this.frames.length]),
      );
    }
  }

  /** Goes on from `seq` (after a resume) on another connection, same capture clock. */
  resumeOn(send: (message: Buffer) => void, seq: number): Camera {
    const next = new Camera(send, this.frames, this.intervalMs, this.startedAt);
    next.seq = seq;
    this.stopped = true;
    return next;
  }

  get lastSeq(): number {
    return this.seq;
  }
}
