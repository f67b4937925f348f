/**
 * Recording capacity: how many frames per second this node's encoders sustain, and how the
 * sessions share them. Pure logic; `CapacityService` feeds it samples and applies its caps.
 *
 * Frames are counted in reference frames: one frame of the default recording size
 * (RECORDING_WIDTH × RECORDING_HEIGHT). A session recorded at twice the pixels weighs 2 per frame:
 * the encoder's work grows with the pixels it encodes.
 */

/** One second of the node's encoding, as `CapacityService` samples it. */
export interface CapacitySample {
  /** Reference frames that left the encoders during the sample. */
  encoded: number;
  seconds: number;
  /**
   * The encoders had more to do than they did: frames waited for them (recorders behind) while
   * the machine's cores were busy (`encodersSaturated`). Only then is the rate what they sustain;
   * otherwise it is what was asked of them.
   */
  saturated: boolean;
  /** The cores had time to spare: the encoders could have done more had they been asked. */
  spare: boolean;
}

/**
 * Weight of a saturated sample in the running estimate: about the last five seconds count.
 * Lower and the node keeps admitting for too long after the machine got busier; higher and one
 * disturbed second throttles every session.
 */
const SATURATED_WEIGHT = 0.3;
/**
 * Growth per second of a spare sample: a node whose figure fell while the machine was busy
 * admits only what that figure allows, so its encoders are never asked for more and no sample
 * would show them doing more. With cores to spare, the figure creeps back up (doubling in about
 * 25 s) until a saturated sample says where the limit is now.
 */
const SPARE_GROWTH = 1.03;

/** The sustained encoding rate, from samples taken while the node runs. */
export class CapacityEstimate {
  private value: number;
  private measuredValue: number | null = null;
  /** The highest figure known: the initial one, or a higher rate seen. Recovery stops there. */
  private ceiling: number;
  /** A sample has moved the estimate: it is the node's own figure now. */
  private moved = false;

  constructor(
    initial: number,
    /** A configured capacity: samples are recorded but do not move it. */
    private readonly fixed: boolean,
  ) {
    this.value = initial;
    this.ceiling = initial;
  }

  /** Reference frames per second the encoders sustain. */
  get fps(): number {
    return this.value;
  }

  /** Where the figure comes from. */
  get source(): 'configured' | 'initial' | 'measured' {
    if (this.fixed) {
      return 'configured';
    }
    return this.moved ? 'measured' : 'initial';
  }

  /** The encoding rate of the last sample, whatever the source. */
  get lastRate(): number | null {
    return this.measuredValue;
  }

  /**
   * A saturated sample moves the estimate toward its rate (up or down); an unsaturated one can
   * only raise it: the encoders did that much without falling behind, so they can do at least
   * that; and one with cores to spare lets a lowered estimate creep back toward the highest known.
   * Returns true when the estimate changed.
   */
  add(sample: CapacitySample): boolean {
    if (sample.seconds <= 0) {
      return false;
    }
    const rate = sample.encoded / sample.seconds;
    this.measuredValue = rate;
    if (this.fixed) {
      return false;
    }
    const before = this.value;
    if (sample.saturated) {
      // A saturated second that encoded nothing says nothing about the encoders (they were all
      // starting, or stopped): it must not drive the estimate to zero.
      if (rate > 0) {
        this.value += (rate - this.value) * SATURATED_WEIGHT;
      }
    } else if (rate > this.value) {
      this.value = rate;
      this.ceiling = Math.max(this.ceiling, rate);
    } else if (sample.spare && this.value < this.ceiling) {
      this.value = Math.min(this.ceiling, this.value * SPARE_GROWTH ** sample.seconds);
    }
    if (this.value === before) {
      return false;
    }
    this.moved = true;
    return true;
  }
}

/** The machine's cores are busy: with frames waiting for the encoders, they limit the rate. */
export const BUSY_FRACTION = 0.85;
/** A recorder this many frames behind has more work than its encoder does (see session-recorder). */
export const BEHIND_FRAMES = 16;

/** What a sample needs of a recorder: how far behind it is, and whether an encoder serves it. */
export interface RecorderLoad {
  backlogFrames: number;
  fromSpool: boolean;
  /** False while it waits for an encoder slot. */
  started: boolean;
}

/**
 * Whether the encoders were the bottleneck over a sample, so that its rate is what they sustain:
 * the cores busy, and at least one running recorder per core behind its session. One behind is
 * limited by its own encoder, not the node's. A recording waiting for an encoder slot does not
 * count: its frames wait for a slot, not for the encoders. It used to, and under bench:abuse (48
 * sessions for 36 slots, the cores busy with the attacks) every second then counted as saturated
 * while the running encoders only had what the capped sessions sent: each sample's rate lowered
 * the estimate, which lowered the caps and the next rate, down to about 1 fps a session.
 */
export function encodersSaturated(
  recorders: Iterable<RecorderLoad>,
  cores: number,
  busy: number,
): boolean {
  if (busy < BUSY_FRACTION) {
    return false;
  }
  let behind = 0;
  for (const r of recorders) {
    if (r.started && (r.fromSpool || r.backlogFrames >= BEHIND_FRAMES)) {
      behind++;
    }
  }
  return behind >= cores;
}

/** A session's claim on the encoders. */
export interface Demand {
  /** Frames per second it declared (or may send: the channel's maximum when it declared none). */
  fps: number;
  /** Reference frames per frame (its recording's pixels over the default recording's). */
  weight: number;
}

/**
 * Max-min fair frame rate: the largest `share` such that every session sending min(fps, share)
 * stays within `budget` reference frames per second. Infinity when every session fits at its
 * declared rate.
 */
export function fairShare(demands: Iterable<Demand>, budget: number): number {
  const sorted = [...demands].sort((a, b) => a.fps - b.fps);
  let weightLeft = sorted.reduce((sum, d) => sum + d.weight, 0);
  let left = budget;
  for (const d of sorted) {
    // Everyone from here on gets `share`; does `d` fit at its declared rate?
    if (d.fps * weightLeft > left) {
      return Math.max(0, left / weightLeft);
    }
    left -= d.fps * d.weight;
    weightLeft -= d.weight;
  }
  return Infinity;
}

/** Reference frames per second the demands use at `share` (their declared rate, or `share`). */
export function usedAt(demands: Iterable<Demand>, share: number): number {
  let used = 0;
  for (const d of demands) {
    used += Math.min(d.fps, share) * d.weight;
  }
  return used;
}

export type AdmissionPolicy = 'throttle' | 'refuse';

/**
 * Whether a new session fits. `throttle`: while every session (the new one too) still gets at
 * least `minFps` (or its declared rate, when lower), the sessions share the budget and those above
 * the share are capped. `refuse`: only while every session, the new one too, fits at its declared
 * rate.
 */
export function admits(
  current: Iterable<Demand>,
  candidate: Demand,
  budget: number,
  policy: AdmissionPolicy,
  minFps: number,
): boolean {
  const all = [...current, candidate];
  const share = fairShare(all, budget);
  if (share === Infinity) {
    return true;
  }
  if (policy === 'refuse') {
    return false;
  }
  return share >= Math.min(minFps, candidate.fps);
}

/**
 * The cap on a session declaring `fps` when the share is `share`: null when it is not capped.
 * Whole frames per second, at least 1: the wire's `maxFps` is an integer.
 */
export function capFor(fps: number, share: number): number | null {
  if (share >= fps) {
    return null;
  }
  return Math.max(1, Math.floor(share));
}
