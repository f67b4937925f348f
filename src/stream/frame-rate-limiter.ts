/** Options of a FrameRateLimiter; the rates usually come from QuotaService.limitsFor(). */
export interface FrameRateLimiterOptions {
  /** Frames per second, sustained. */
  maxFps: number;
  /** Kilobits (1000 bits) per second of media messages, sustained. */
  maxKbps: number;
  /** How long a client may stay over the limit after its `flow` before it is `exceeded`. */
  graceMs: number;
  /** Burst allowance: the bucket holds this many milliseconds of each rate. Default 1000. */
  burstMs?: number;
  /** Time without an over-limit frame (and not living on the cushion) to count as recovered. */
  recoveryMs?: number;
}

/** `flow`: send a `flow` message now; `exceeded`: close with 4029 (terminal). */
export type FrameVerdict = 'ok' | 'flow' | 'exceeded';

const DEFAULT_BURST_MS = 1_000;
const DEFAULT_RECOVERY_MS = 1_000;
/**
 * Share of each bucket given back at `flow`, so a client that slows to exactly the limit is not
 * failed by timing jitter around an empty bucket.
 */
const CUSHION_SHARE = 0.25;
/**
 * Sustained rates are enforced this much above the nominal ones: client clocks and timers are not
 * exact (a browser's setInterval(33) for 30 fps gives 30.3 fps), and a client pacing itself at the
 * advertised maxFps must never be closed for it.
 */
const RATE_TOLERANCE = 0.05;

const PHASE_OK = 0;
const PHASE_FLOWED = 1;
const PHASE_EXCEEDED = 2;

/**
 * Per-connection frame-rate and bandwidth quota: two token buckets (frames and bytes), checked
 * together for each media message. O(1), no allocation, no clock of its own: the caller passes
 * `now` (best a monotonic clock such as performance.now(); a clock stepping back is taken as the
 * new baseline, never as negative refill).
 *
 * Token buckets rather than a sliding 1 s window: a window needs a timestamp per frame in it (a
 * ring buffer per connection), forgets a whole clump at once a second later, and makes the burst
 * rule a second parameter; a bucket is two numbers per rate, refills continuously, and its size is
 * the burst rule.
 *
 * Burst rule: each bucket holds `burstMs` (default 1 s) of its rate and starts full. A client may
 * send a whole second's worth of frames at once (a weak network delivering frames in clumps after a
 * stall), so within any one second it may send up to twice the per-second rate, but its average
 * over longer spans cannot exceed the rate (plus a 5% tolerance for client clocks and timers).
 *
 * Rules:
 * - A frame conforms when neither bucket is in debt; a conforming frame is charged in full (one
 *   frame that is larger than the whole byte bucket still passes, and leaves the bucket in debt
 *   until the refill pays it back). A non-conforming frame is over the limit and is not charged,
 *   so debt stays under one frame and a client back at the rate is not punished for the past.
 * - The first frame over the limit returns `flow` (once). Each bucket then gets at least a small
 *   cushion (a quarter of its size) so that a client slowing to exactly the limit is not failed by
 *   jitter around an empty bucket, and is measured from there: frames over the limit return `ok`
 *   while within `graceMs` of the flow, and `exceeded` after it.
 * - Recovery: once no frame has been over the limit for `recoveryMs` and neither bucket is below
 *   its cushion after the frame's charge (the client is not living on the cushion), the state
 *   resets, and a later burst gets a fresh `flow` before any `exceeded`.
 * - `exceeded` is terminal: every later call returns it too.
 */
export class FrameRateLimiter {
  private fps: number;
  readonly maxKbps: number;
  private readonly graceMs: number;
  private readonly recoveryMs: number;
  private readonly burstMs: number;
  private frameRatePerMs: number;
  private readonly byteRatePerMs: number;
  private frameCapacity: number;
  private readonly byteCapacity: number;
  private frameCushion: number;
  private readonly byteCushion: number;
  private frameTokens: number;
  private byteTokens: number;
  private lastMs = 0;
  private started = false;
  private phase = PHASE_OK;
  private flowAtMs = 0;
  private lastOverMs = 0;
  private overReason: 'fps' | 'bandwidth' | null = null;

  constructor(options: FrameRateLimiterOptions) {
    const burstMs = options.burstMs ?? DEFAULT_BURST_MS;
    const recoveryMs = options.recoveryMs ?? DEFAULT_RECOVERY_MS;
    for (const [name, value] of [
      ['maxFps', options.maxFps],
      ['maxKbps', options.maxKbps],
      ['burstMs', burstMs],
    ] as const) {
      if (!(value > 0) || !Number.isFinite(value)) {
        throw new RangeError(`${name} must be a positive number, got ${value}`);
      }
    }
    if (!(options.graceMs >= 0) || !(recoveryMs >= 0)) {
      throw new RangeError('graceMs and recoveryMs must not be negative');
    }
    this.maxKbps = options.maxKbps;
    this.graceMs = options.graceMs;
    this.recoveryMs = recoveryMs;
    this.burstMs = burstMs;
    this.fps = options.maxFps;
    this.frameRatePerMs = 0;
    this.frameCapacity = 0;
    this.frameCushion = 0;
    this.setFrameRate(options.maxFps);
    const byteRatePerMs = (options.maxKbps * 1000) / 8 / 1000;
    this.byteRatePerMs = byteRatePerMs * (1 + RATE_TOLERANCE);
    this.byteCapacity = byteRatePerMs * burstMs;
    this.byteCushion = this.byteCapacity * CUSHION_SHARE;
    this.frameTokens = this.frameCapacity;
    this.byteTokens = this.byteCapacity;
  }

  /** The sustained frame rate allowed now. */
  get maxFps(): number {
    return this.fps;
  }

  /**
   * Changes the frame rate at `nowMs` (the node asks a session to slow down, or lets it speed up
   * again). Lowering it counts as a `flow` sent at `nowMs`: the client has the grace period to
   * come down to the new rate, and frames over it after that are `exceeded`. The bucket keeps at
   * most one burst of the new rate, so the new rate holds from the end of the grace period on.
   */
  setMaxFps(maxFps: number, nowMs: number): void {
    if (!(maxFps > 0) || !Number.isFinite(maxFps)) {
      throw new RangeError(`maxFps must be a positive number, got ${maxFps}`);
    }
    const lower = maxFps < this.fps;
    this.setFrameRate(maxFps);
    this.frameTokens = Math.min(this.frameTokens, this.frameCapacity);
    if (lower && this.phase !== PHASE_EXCEEDED) {
      this.phase = PHASE_FLOWED;
      this.flowAtMs = nowMs;
      this.lastOverMs = nowMs;
      this.frameTokens = Math.max(this.frameTokens, this.frameCushion);
    }
  }

  private setFrameRate(maxFps: number): void {
    const frameRatePerMs = maxFps / 1000;
    this.fps = maxFps;
    this.frameRatePerMs = frameRatePerMs * (1 + RATE_TOLERANCE);
    this.frameCapacity = frameRatePerMs * this.burstMs;
    this.frameCushion = this.frameCapacity * CUSHION_SHARE;
  }

  /** Which rate the last over-limit frame broke, for the `flow` reason and logs. */
  get reason(): 'fps' | 'bandwidth' | null {
    return this.overReason;
  }

  /** Classifies one media message of `bytes` bytes arriving at `nowMs`. Call for every frame. */
  onFrame(bytes: number, nowMs: number): FrameVerdict {
    if (this.phase === PHASE_EXCEEDED) {
      return 'exceeded';
    }
    if (this.started) {
      const elapsed = nowMs - this.lastMs;
      if (elapsed > 0) {
        this.frameTokens = Math.min(
          this.frameCapacity,
          this.frameTokens + elapsed * this.frameRatePerMs,
        );
        this.byteTokens = Math.min(
          this.byteCapacity,
          this.byteTokens + elapsed * this.byteRatePerMs,
        );
      }
    } else {
      this.started = true;
    }
    this.lastMs = nowMs;

    if (this.frameTokens >= 0 && this.byteTokens >= 0) {
      this.frameTokens -= 1;
      this.byteTokens -= bytes;
      // After the charge: a client exactly at the rate stays at the cushion it got at the flow, one
      // a little over sinks below it long before the cushion is used up.
      if (
        this.phase === PHASE_FLOWED &&
        nowMs - this.lastOverMs >= this.recoveryMs &&
        this.frameTokens >= this.frameCushion &&
        this.byteTokens >= this.byteCushion
      ) {
        this.phase = PHASE_OK;
      }
      return 'ok';
    }

    this.lastOverMs = nowMs;
    this.overReason = this.frameTokens < 0 ? 'fps' : 'bandwidth';
    if (this.phase === PHASE_OK) {
      this.phase = PHASE_FLOWED;
      this.flowAtMs = nowMs;
      this.frameTokens = Math.max(this.frameTokens, this.frameCushion);
      this.byteTokens = Math.max(this.byteTokens, this.byteCushion);
      return 'flow';
    }
    if (nowMs - this.flowAtMs > this.graceMs) {
      this.phase = PHASE_EXCEEDED;
      return 'exceeded';
    }
    return 'ok';
  }
}
