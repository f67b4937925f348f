import type { CpuClass } from './cpu-class';
import type { VideoEncoder } from './recorder-media';

/**
 * A recording's H.264 encoders. One encoder while the recorder keeps up. A recorder that is
 * behind (a client re-sending its outbox at once, a session recorded from its spool) splits what
 * it has left into chunks of `chunk` frames and hands them in turn to up to `maxTails` tail
 * encoders, each with a key frame every `chunk` frames it is given, so every chunk starts with
 * an IDR and decodes on its own: the tail is encoded on every core instead of one. Access units
 * come back in the order the frames went in, whichever encoder made them.
 */
export interface VideoLanesOptions {
  /** A started encoder; tail encoders with a key frame every `keyframeEvery` frames. */
  create(onAccessUnit: (au: Buffer) => void, keyframeEvery: number | null): VideoEncoder;
  /** Tail encoders at most (the node's cores); below 2 the recording is never split. */
  maxTails: number;
  /** Frames per chunk (and tail key-frame interval), at least 2. */
  chunk: number;
  /** Encoders that may fail on a bad frame before the recording fails. */
  maxRestarts: number;
  /** One access unit per frame kept, in the order of `write`, with the frame's time. */
  onFrame(au: Buffer, ts: number): void;
  /** A frame an encoder stopped on: whether it decodes (it is re-sent) or not (left out). */
  decodes(jpeg: Buffer): Promise<boolean>;
  onBadFrame(seq: number): void;
  /** An encoder died between two writes: `write` or `end` recovers it; the owner may wake. */
  onDied(): void;
  /** The lanes cannot go on (an encoder made more frames than it was given). */
  onFailed(err: Error): void;
}

interface Lane {
  /** Started with the lane's first frame: an encoder closed with no input fails. */
  encoder: VideoEncoder | null;
  tail: boolean;
  /** Frames given to this encoder: its frame number of the next one. */
  given: number;
  /** Frames given and not yet out of it. */
  pending: number;
  /** Its access units, waiting until every earlier frame is out. */
  ready: Buffer[];
  died: boolean;
  /** stdin closed: takes no more frames. */
  closed: boolean;
  cpuClass: CpuClass;
}

interface Frame {
  jpeg: Buffer;
  ts: number;
  seq: number;
  lane: Lane;
}

export class VideoLanes {
  /** Frames given to an encoder, not yet out of every lane before them, in write order. */
  private readonly inFlight: Frame[] = [];
  private primary: Lane | null = null;
  private tails: Lane[] = [];
  /** Lanes whose stdin is closed and whose last access units may still come. */
  private readonly retiring = new Set<Lane>();
  private turn = 0;
  private chunkLeft = 0;
  private current: Lane | null = null;
  private restarts = 0;
  private anyDied = false;
  private killed = false;
  /** CPU classes: of the lanes whose frames come first, and of the other tail lanes. */
  private leadingClass: CpuClass = 'normal';
  private extraClass: CpuClass = 'background';

  constructor(private readonly o: VideoLanesOptions) {}

  /** Frames inside encoders (or out of one and waiting for an earlier lane). */
  get encoding(): number {
    return this.inFlight.length;
  }

  /** Tail encoders running (0 while one encoder serves the recording). */
  get split(): number {
    return this.tails.length;
  }

  /**
   * Encodes one frame. `ahead`: records stored after this one; `finishing`: the session ended,
   * everything left is in the spool; `mayTail`: the recorder may split across tail encoders now
   * (while it may not, a split recorder goes back to one encoder at its next chunk).
   * Resolves when the frame's encoder takes more input.
   */
  async write(
    jpeg: Buffer,
    ts: number,
    seq: number,
    ahead: number,
    finishing: boolean,
    mayTail: boolean,
  ): Promise<void> {
    if (this.anyDied) {
      await this.recoverDied();
    }
    let lane = this.laneFor(ahead, finishing, mayTail);
    if (lane.died) {
      lane = await this.recover(lane);
    }
    const encoder = lane.encoder ?? this.startEncoder(lane);
    this.inFlight.push({ jpeg, ts, seq, lane });
    lane.given++;
    lane.pending++;
    try {
      if (!encoder.write(jpeg)) {
        await encoder.drained();
      }
    } catch {
      await this.recover(lane);
    }
  }

  /** Closes every encoder and resolves once every frame is out; recovers failed ones. */
  async end(): Promise<void> {
    for (;;) {
      const lanes = this.lanes().filter((lane) => lane.encoder !== null);
      const results = await Promise.allSettled(
        lanes.map((lane) => {
          lane.closed = true;
          return lane.encoder!.end();
        }),
      );
      let failed = false;
      for (const [i, result] of results.entries()) {
        if (result.status === 'rejected') {
          failed = true;
          if (lanes[i].pending === 0) {
            throw result.reason;
          }
          await this.recover(lanes[i]);
        }
      }
      if (!failed) {
        if (this.inFlight.length > 0) {
          throw new Error(`${this.inFlight.length} frames never came out of the encoders`);
        }
        return;
      }
    }
  }

  kill(): void {
    this.killed = true;
    for (const lane of this.lanes()) {
      lane.encoder?.kill();
    }
  }

  /**
   * The CPU classes: `leading` for the encoders whose frames come first (the one encoder, or the
   * first tail), `extra` for the other tails, which only add speed.
   */
  setClasses(leading: CpuClass, extra: CpuClass): void {
    this.leadingClass = leading;
    this.extraClass = extra;
    this.applyClasses();
  }

  private applyClasses(): void {
    for (const lane of this.lanes()) {
      this.applyClass(lane);
    }
  }

  private lanes(): Lane[] {
    const lanes = [...this.retiring, ...this.tails];
    if (this.primary) {
      lanes.push(this.primary);
    }
    return lanes;
  }

  private applyClass(lane: Lane): void {
    const extra = lane.tail && lane !== this.tails[0] && !this.retiring.has(lane);
    const cpuClass = extra ? this.extraClass : this.leadingClass;
    if (cpuClass !== lane.cpuClass) {
      lane.cpuClass = cpuClass;
      lane.encoder?.setCpuClass(cpuClass);
    }
  }

  private laneFor(stored: number, finishing: boolean, mayTail: boolean): Lane {
    const { chunk, maxTails } = this.o;
    // Frames already handed to encoders and not yet encoded wait for them as much as those still
    // in the spool: a loop that reads as fast as the client stores is not caught up while the
    // encoders' input buffers are full. Frames encoded and only waiting for an earlier chunk's
    // last few (which a tail holds until it gets more input) wait for nothing.
    let encoded = 0;
    for (const lane of this.lanes()) {
      encoded += lane.ready.length;
    }
    const ahead = stored + this.inFlight.length - encoded;
    if (this.tails.length === 0) {
      if (maxTails < 2 || !mayTail || ahead < 3 * chunk) {
        this.primary ??= this.newLane(false);
        return this.primary;
      }
      // Split: the one encoder gets no more frames; the tails start at a chunk boundary.
      if (this.primary) {
        this.retire(this.primary);
        this.primary = null;
      }
      this.tails = Array.from({ length: maxTails }, () => this.newLane(true));
      this.turn = 0;
      this.chunkLeft = 0;
      this.applyClasses();
    }
    if (this.chunkLeft === 0) {
      if (!mayTail || (!finishing && ahead < chunk)) {
        // Caught up (or no longer allowed the cores): back to one encoder, from a key frame.
        for (const lane of this.tails) {
          this.retire(lane);
        }
        this.tails = [];
        this.current = null;
        this.primary = this.newLane(false);
        this.applyClasses();
        return this.primary;
      }
      let lane = this.tails[this.turn];
      if (lane.given % chunk !== 0) {
        // Its key frames no longer fall at chunk starts: it took the rest of a chunk in place of
        // a lane that died.
        this.retire(lane);
        lane = this.newLane(true);
        this.tails[this.turn] = lane;
        this.applyClasses();
      }
      this.current = lane;
      this.turn = (this.turn + 1) % this.tails.length;
      this.chunkLeft = chunk;
    }
    this.chunkLeft--;
    return this.current!;
  }

  private newLane(tail: boolean): Lane {
    const lane: Lane = {
      encoder: null,
      tail,
      given: 0,
      pending: 0,
      ready: [],
      died: false,
      closed: false,
      cpuClass: 'normal',
    };
    this.applyClass(lane);
    return lane;
  }

  private startEncoder(lane: Lane): VideoEncoder {
    if (this.killed) {
      throw new Error('recording aborted');
    }
    const encoder = this.o.create(
      (au) => this.onAccessUnit(lane, encoder, au),
      lane.tail ? this.o.chunk : null,
    );
    lane.encoder = encoder;
    lane.died = false;
    lane.closed = false;
    if (lane.cpuClass !== 'normal') {
      encoder.setCpuClass(lane.cpuClass);
    }
    encoder.exited().then(
      () => {
        if (lane.encoder === encoder && lane.closed && lane.pending === 0) {
          this.retiring.delete(lane);
        }
      },
      () => {
        if (lane.encoder === encoder && !this.killed) {
          lane.died = true;
          this.anyDied = true;
          this.o.onDied();
        }
      },
    );
    return encoder;
  }

  private retire(lane: Lane): void {
    lane.closed = true;
    if (lane.encoder) {
      this.retiring.add(lane);
      // Its failure shows in exited(), handled there and recovered by the next write or end().
      lane.encoder.end().catch(() => undefined);
    }
  }

  private onAccessUnit(lane: Lane, encoder: VideoEncoder, au: Buffer): void {
    if (lane.encoder !== encoder) {
      return;
    }
    if (lane.pending === 0) {
      this.o.onFailed(new Error('the encoder produced more frames than it was given'));
      return;
    }
    lane.pending--;
    lane.ready.push(au);
    this.deliver();
  }

  /** Hands over every access unit whose earlier frames are all out. */
  private deliver(): void {
    for (;;) {
      const head = this.inFlight[0];
      const next = head?.lane.ready.shift();
      if (!head || next === undefined) {
        return;
      }
      this.inFlight.shift();
      this.o.onFrame(next, head.ts);
    }
  }

  private async recoverDied(): Promise<void> {
    this.anyDied = false;
    for (const lane of this.lanes()) {
      if (lane.died) {
        await this.recover(lane);
      }
    }
  }

  /**
   * An encoder stopped on a frame it could not decode (ffmpeg runs with -xerror, since dropping
   * a frame silently would shift every later frame's time), or died. Its frames not yet out are
   * checked with a full decode: bad ones are reported and left out, the rest are encoded again
   * from a key frame.
   *
   * Each run of them that follows another lane's frames (a tail lane's chunks) goes to an encoder
   * of its own, so it starts on a key frame: one encoder counting its key frames from its first
   * frame would put them on the re-sent frames' boundaries, not the chunks'. A tail lane still
   * taking chunks gives its place to a new lane (returned; the chunk under way goes on there), and
   * every lane that re-sent a run but the one encoder is closed once its run is in.
   */
  private async recover(lane: Lane): Promise<Lane> {
    if (++this.restarts > this.o.maxRestarts) {
      throw new Error(`the encoder failed ${this.o.maxRestarts} times`);
    }
    lane.encoder?.kill();
    const runs = this.runsToResend(lane);
    lane.given = 0;
    lane.pending = 0;
    lane.encoder = null;
    let next = lane;
    const slot = lane.tail ? this.tails.indexOf(lane) : -1;
    if (slot >= 0) {
      next = this.newLane(true);
      this.tails[slot] = next;
      if (this.current === lane) {
        this.current = next;
      }
    }
    const runLanes = runs.map((_, i) => (i === 0 ? lane : this.newLane(true)));
    for (const [i, run] of runs.entries()) {
      const runLane = runLanes[i];
      const closing = runLane !== next || lane.closed;
      if (closing) {
        // Among the lanes meanwhile, so that a death or `end()` during the re-sending finds it.
        this.retiring.add(runLane);
      }
      for (const frame of run) {
        frame.lane = runLane;
        if (await this.o.decodes(frame.jpeg)) {
          const encoder = runLane.encoder ?? this.startEncoder(runLane);
          runLane.given++;
          runLane.pending++;
          if (!encoder.write(frame.jpeg)) {
            // Rejects if it dies too: exited() marks it, and the next write or end() recovers it.
            await encoder.drained().catch(() => undefined);
          }
        } else {
          this.inFlight.splice(this.inFlight.indexOf(frame), 1);
          this.o.onBadFrame(frame.seq);
          this.deliver();
        }
      }
      if (closing) {
        this.retiring.delete(runLane);
        this.retire(runLane);
      }
    }
    if (lane.closed && runs.length === 0) {
      this.retiring.delete(lane);
    }
    this.applyClasses();
    return next;
  }

  /**
   * A lane's frames not yet out of its encoder, in runs: frames next to each other in `inFlight`
   * (its oldest ones, whose access units came, are not re-sent).
   */
  private runsToResend(lane: Lane): Frame[][] {
    const runs: Frame[][] = [];
    let skip = lane.ready.length;
    let previous = -2;
    for (const [i, frame] of this.inFlight.entries()) {
      if (frame.lane !== lane) {
        continue;
      }
      if (skip > 0) {
        skip--;
      } else if (i === previous + 1 && runs.length > 0) {
        runs[runs.length - 1].push(frame);
      } else {
        runs.push([frame]);
      }
      previous = i;
    }
    return runs;
  }
}
