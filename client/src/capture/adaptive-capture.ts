/** Settings of the camera that the adaptive capture chooses. */
export interface CaptureSettings {
  /** Frames per second to capture; 0 pauses the camera (a `flow` with `maxFps` 0). */
  fps: number;
  /** JPEG quality, 0–1. */
  quality: number;
}

/** What the adaptive capture looks at, taken from `client.stats()` a few times a second. */
export interface CaptureSample {
  /** A monotonic clock in ms (`performance.now()`). */
  now: number;
  /** Messages per second the server allows now (`opened.limits.maxFps`, then `flow`). */
  maxFps: number;
  /** Messages taken and not yet acknowledged (the outbox's depth). */
  outboxDepth: number;
}

export interface AdaptiveCaptureOptions {
  /** What the camera is asked for when nothing holds it back (default 10 fps, quality 0.7). */
  target?: Partial<CaptureSettings>;
  /** Never below these under pressure (default 2 fps, quality 0.3); `flow` may go lower. */
  floor?: Partial<CaptureSettings>;
  /**
   * Messages per second taken by other tracks (audio chunks), which count against the server's
   * `maxFps` too: the camera gets what is left.
   */
  reservedFps?: number;
  /** Pressure: more than this many seconds of frames unacknowledged (default 2). */
  highWaterS?: number;
  /** Calm: at most this many seconds of frames unacknowledged (default 0.5). */
  lowWaterS?: number;
  /** One step down at most this often while the pressure lasts (default 1000 ms). */
  stepDownMs?: number;
  /** One step up after this long calm, and again after as long (default 3000 ms). */
  stepUpMs?: number;
  /** Quality moves by this much per step (default 0.1). */
  qualityStep?: number;
}

/** Why the settings changed. */
export type AdaptReason = 'flow' | 'pressure' | 'recovered';

export interface AdaptDecision extends CaptureSettings {
  changed: boolean;
  reason: AdaptReason | null;
}

const DEFAULTS = {
  target: { fps: 10, quality: 0.7 },
  floor: { fps: 2, quality: 0.3 },
  reservedFps: 0,
  highWaterS: 2,
  lowWaterS: 0.5,
  stepDownMs: 1000,
  stepUpMs: 3000,
  qualityStep: 0.1,
};

/**
 * Chooses the camera's fps and JPEG quality from what the client reports: lower under `flow` or a
 * growing unacknowledged window, back up once it is calm again. Pure logic (no timers, no DOM):
 * the capture feeds it a sample a few times a second and applies what it answers.
 *
 * - `flow` is obeyed at once: the camera's fps is capped at `maxFps - reservedFps`; when the
 *   server allows more again, fps climbs back by the steps below, not in one jump.
 * - Pressure (more than `highWaterS` of frames at the current rate unacknowledged) costs one step
 *   per `stepDownMs`: quality first (cheaper for the eye than fps), by `qualityStep` down to the
 *   floor, then fps halved down to the floor.
 * - Hysteresis: a step back up needs `stepUpMs` in a row at or below `lowWaterS` (not merely below
 *   the high water), and each step up restarts that wait; fps comes back first, then quality. A
 *   window between the two marks holds the settings where they are.
 */
export class AdaptiveCapture {
  private readonly target: CaptureSettings;
  private readonly floor: CaptureSettings;
  private readonly o: typeof DEFAULTS;
  /** The level chosen by pressure and recovery, before the `flow` cap. */
  private fps: number;
  private quality: number;
  private lastDownAt = -Infinity;
  private calmSince: number | null = null;
  private last: CaptureSettings;

  constructor(options: AdaptiveCaptureOptions = {}) {
    this.o = {
      ...DEFAULTS,
      reservedFps: options.reservedFps ?? DEFAULTS.reservedFps,
      highWaterS: options.highWaterS ?? DEFAULTS.highWaterS,
      lowWaterS: options.lowWaterS ?? DEFAULTS.lowWaterS,
      stepDownMs: options.stepDownMs ?? DEFAULTS.stepDownMs,
      stepUpMs: options.stepUpMs ?? DEFAULTS.stepUpMs,
      qualityStep: options.qualityStep ?? DEFAULTS.qualityStep,
    };
    this.target = { ...DEFAULTS.target, ...options.target };
    this.floor = {
      fps: Math.min(this.target.fps, options.floor?.fps ?? DEFAULTS.floor.fps),
      quality: Math.min(this.target.quality, options.floor?.quality ?? DEFAULTS.floor.quality),
    };
    this.fps = this.target.fps;
    this.quality = this.target.quality;
    this.last = { ...this.target };
  }

  /** The settings in force. */
  get settings(): CaptureSettings {
    return { ...this.last };
  }

  /** Takes a sample and answers the settings to use from now on. */
  update(sample: CaptureSample): AdaptDecision {
    const allowed = Math.max(0, sample.maxFps - this.o.reservedFps);
    let reason: AdaptReason | null = null;
    if (this.fps > allowed) {
      // Obeyed at once, and climbed back from step by step like any other lowering.
      this.fps = allowed;
      reason = 'flow';
    }
    // Pressure is measured against the rate messages are produced at now, so that a window of a
    // few frames at 2 fps is not taken for calm at 10 fps.
    const rate = Math.max(1, this.fps + this.o.reservedFps);
    const high = this.o.highWaterS * rate;
    const low = this.o.lowWaterS * rate;
    if (sample.outboxDepth > high) {
      this.calmSince = null;
      if (sample.now - this.lastDownAt >= this.o.stepDownMs && this.stepDown()) {
        this.lastDownAt = sample.now;
        reason ??= 'pressure';
      }
    } else if (sample.outboxDepth <= low) {
      this.calmSince ??= sample.now;
      if (sample.now - this.calmSince >= this.o.stepUpMs && this.stepUp(allowed)) {
        this.calmSince = sample.now;
        reason ??= 'recovered';
      }
    } else {
      this.calmSince = null;
    }
    const next = { fps: this.fps, quality: this.quality };
    const changed = next.fps !== this.last.fps || next.quality !== this.last.quality;
    this.last = next;
    return { ...next, changed, reason: changed ? reason : null };
  }

  private stepDown(): boolean {
    if (this.quality > this.floor.quality) {
      this.quality = round(Math.max(this.floor.quality, this.quality - this.o.qualityStep));
      return true;
    }
    if (this.fps > this.floor.fps) {
      this.fps = Math.max(this.floor.fps, round(this.fps / 2));
      return true;
    }
    return false;
  }

  /** Back up one step; fps only up to what the server allows (more would be refused anyway). */
  private stepUp(allowed: number): boolean {
    if (this.fps < this.target.fps && this.fps < allowed) {
      this.fps = Math.min(this.target.fps, allowed, this.fps === 0 ? this.floor.fps : this.fps * 2);
      return true;
    }
    if (this.quality < this.target.quality) {
      this.quality = round(Math.min(this.target.quality, this.quality + this.o.qualityStep));
      return true;
    }
    return false;
  }
}

/** Two decimals: repeated 0.1 steps must land on the same values going down and up. */
function round(n: number): number {
  return Math.round(n * 100) / 100;
}
