import {
  Inject,
  Injectable,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { availableParallelism, cpus } from 'node:os';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { RecordingService } from '../media/recording.service';
import {
  admits,
  BUSY_FRACTION,
  CapacityEstimate,
  capFor,
  type Demand,
  encodersSaturated,
  fairShare,
  usedAt,
} from './capacity';
import { z } from 'zod';

/**
 * Reference frames per second per core assumed until the node has measured its own: bench:recording
 * kept 38 sessions of 10 fps 640×480 in real time on 2 cores (190 per core, with nothing else to
 * do); a node that also stores and acknowledges them has less.
 */
const INITIAL_FPS_PER_CORE = 150;
/** How often the encoders' rate is sampled. */
const SAMPLE_MS = 1_000;
/** Estimate changes smaller than this do not move the caps (each change is a `flow` message). */
const RECAP_CHANGE = 0.05;
/** Retry-After for a session refused for capacity: sessions end and the estimate moves. */
const OVER_CAPACITY_RETRY_S = 10;

/** A session's claim on the recording capacity, from admission to its end. */
export interface CapacityClaim {
  readonly demand: Demand;
  /** The frame rate this session may send now; null when it may send what it declared. */
  readonly cap: number | null;
  /** Gives the claim back; once only, later calls do nothing. */
  release(): void;
}

/** `GET /v1/admin/stats` and /metrics: capacity and its use, in reference frames per second. */
export const capacityStatsSchema = z.strictObject({
  policy: z.enum(['throttle', 'refuse']),
  source: z.enum(['configured', 'initial', 'measured']),
  /** Frames per second the encoders sustain (reference frames: RECORDING_WIDTH × HEIGHT). */
  capacityFps: z.number(),
  /** What sessions may use: the capacity less RECORDING_CAPACITY_HEADROOM. */
  budgetFps: z.number(),
  /** What the sessions declared. */
  demandFps: z.number(),
  /** What they may send under their caps. */
  allowedFps: z.number(),
  /** Frames encoded per second over the last sample. */
  encodedFps: z.number().nullable(),
  /** The encoders were the bottleneck over the last sample. */
  saturated: z.boolean(),
  /** The rate each capped session may send; null when none is capped. */
  shareFps: z.number().nullable(),
  sessions: z.number().int(),
  throttledSessions: z.number().int(),
  refusedTotal: z.number().int(),
  minFps: z.number(),
});

export type CapacityStats = z.output<typeof capacityStatsSchema>;

class Claim implements CapacityClaim {
  cap: number | null = null;
  private released = false;

  constructor(
    readonly demand: Demand,
    private readonly onRelease: (claim: Claim) => void,
  ) {}

  release(): void {
    if (!this.released) {
      this.released = true;
      this.onRelease(this);
    }
  }
}

/**
 * The node's recording capacity: measured from the frames its encoders turn out while they are the
 * bottleneck, and shared among the sessions by their declared frame rates. A session that does
 * not fit is refused (503 / 1013) or, under the `throttle` policy, every session above the fair
 * share is capped with `flow` (reason `capacity`) while the share stays at or above
 * RECORDING_MIN_FPS. Acks never wait for any of this: it only decides who sends how much.
 */
@Injectable()
export class CapacityService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly estimate: CapacityEstimate;
  private readonly claims = new Set<Claim>();
  private readonly listeners: Array<() => void> = [];
  private share = Infinity;
  /** The estimate the caps were last computed from. */
  private cappedAt: number;
  private refused = 0;
  /** Frames per second the claims declared, in reference frames: Σ fps × weight. */
  private demanded = 0;
  private saturated = false;
  private timer: NodeJS.Timeout | undefined;
  private lastEncoded = 0;
  private lastSampleAt = 0;
  private lastCpu = cpuTicks();
  private readonly cores = availableParallelism();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly recordings: RecordingService,
  ) {
    const configured = config.RECORDING_CAPACITY_FPS;
    this.estimate = new CapacityEstimate(
      configured ?? this.cores * INITIAL_FPS_PER_CORE,
      configured !== undefined,
    );
    this.cappedAt = this.estimate.fps;
  }

  onApplicationBootstrap(): void {
    this.lastEncoded = this.recordings.encodedFrames;
    this.lastSampleAt = performance.now();
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.timer);
  }

  /** Called whenever the caps may have changed: apply each claim's `cap` to its session. */
  onCapsChanged(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Reference frames per frame of a recording of this size. */
  weightOf(size: { width: number; height: number }): number {
    return this.recordings.weightOf(size);
  }

  /**
   * Admits a new session or throws `over_capacity` (503 with Retry-After; 1013 on WebSocket).
   * The claim counts from now: concurrent opens cannot both take the last room.
   */
  admit(demand: Demand): CapacityClaim {
    const budget = this.budget();
    // Everyone fits at the declared rate (the common case): no fair share to work out.
    if (this.demanded + demand.fps * demand.weight <= budget) {
      return this.add(demand);
    }
    if (!admits(this.demands(), demand, budget, this.config.RECORDING_ADMISSION, this.minFps())) {
      this.refused++;
      throw new AppError(
        ErrorCode.OverCapacity,
        'this node is recording as many frames as it can; try again later or on another node',
        { retryAfterS: OVER_CAPACITY_RETRY_S },
      );
    }
    return this.add(demand);
  }

  /**
   * A session that already exists (resumed after a restart): it is counted, never refused, and
   * shares the capacity like the others.
   */
  readmit(demand: Demand): CapacityClaim {
    return this.add(demand);
  }

  stats(): CapacityStats {
    const demands = [...this.demands()];
    return {
      policy: this.config.RECORDING_ADMISSION,
      source: this.estimate.source,
      capacityFps: round(this.estimate.fps),
      budgetFps: round(this.budget()),
      demandFps: round(usedAt(demands, Infinity)),
      allowedFps: round(
        [...this.claims].reduce((sum, c) => sum + (c.cap ?? c.demand.fps) * c.demand.weight, 0),
      ),
      encodedFps: this.estimate.lastRate === null ? null : round(this.estimate.lastRate),
      saturated: this.saturated,
      shareFps: this.share === Infinity ? null : round(this.share),
      sessions: this.claims.size,
      throttledSessions: [...this.claims].filter((c) => c.cap !== null).length,
      refusedTotal: this.refused,
      minFps: this.minFps(),
    };
  }

  /** One sample of the encoders' rate; the caps follow the estimate when it moved enough. */
  sample(): void {
    const now = performance.now();
    const encoded = this.recordings.encodedFrames;
    const cpu = cpuTicks();
    const busy =
      cpu.total > this.lastCpu.total
        ? (cpu.busy - this.lastCpu.busy) / (cpu.total - this.lastCpu.total)
        : 0;
    this.saturated = encodersSaturated(this.recordings.status().recorders, this.cores, busy);
    this.estimate.add({
      encoded: encoded - this.lastEncoded,
      seconds: (now - this.lastSampleAt) / 1000,
      saturated: this.saturated,
      spare: busy < BUSY_FRACTION,
    });
    this.lastEncoded = encoded;
    this.lastSampleAt = now;
    this.lastCpu = cpu;
    if (Math.abs(this.estimate.fps - this.cappedAt) >= this.cappedAt * RECAP_CHANGE) {
      this.recap();
    }
  }

  private add(demand: Demand): Claim {
    const claim = new Claim(demand, (c) => {
      this.claims.delete(c);
      // Summed back from the claims when none is left, so rounding never accumulates.
      this.demanded = this.claims.size === 0 ? 0 : this.demanded - c.demand.fps * c.demand.weight;
      this.recap();
    });
    this.claims.add(claim);
    this.demanded += demand.fps * demand.weight;
    this.recap();
    return claim;
  }

  /**
   * Recomputes the fair share and every claim's cap, and tells the listeners. While everyone
   * fits, as before, nothing changes: no pass over the sessions (opening thousands of them would
   * otherwise cost a sort of them all for each one).
   */
  private recap(): void {
    this.cappedAt = this.estimate.fps;
    if (this.share === Infinity && this.demanded <= this.budget()) {
      return;
    }
    this.share = fairShare(this.demands(), this.budget());
    for (const claim of this.claims) {
      claim.cap = capFor(claim.demand.fps, this.share);
    }
    for (const listener of this.listeners) {
      listener();
    }
  }

  private *demands(): Iterable<Demand> {
    for (const claim of this.claims) {
      yield claim.demand;
    }
  }

  private budget(): number {
    return this.estimate.fps * (1 - this.config.RECORDING_CAPACITY_HEADROOM);
  }

  private minFps(): number {
    return this.config.RECORDING_MIN_FPS;
  }
}

function cpuTicks(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const { times } of cpus()) {
    const all = times.user + times.nice + times.sys + times.idle + times.irq;
    total += all;
    busy += all - times.idle;
  }
  return { busy, total };
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
