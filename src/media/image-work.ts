import { z } from 'zod';
/** Options of the node's image work (see `ImageWork`). */
export interface ImageWorkOptions {
  /** Image jobs (decode, scale, encode) running at once, node-wide. */
  concurrency: number;
  /** Milliseconds of image work per second one session may use, sustained. */
  budgetMsPerS: number;
  /** Monotonic clock in ms. */
  now?: () => number;
}

/** What the node's image work is doing, for operators. */
export const imageWorkStatsSchema = z.strictObject({
  concurrency: z.number().int(),
  running: z.number().int(),
  /** Sessions with a job waiting (at most one each). */
  waiting: z.number().int(),
  /** Sessions over their budget now (their jobs wait for it to refill). */
  overBudget: z.number().int(),
});

export type ImageWorkStats = z.output<typeof imageWorkStatsSchema>;

/**
 * A job's result (or error) that says what it cost: the CPU time measured where the work ran (a
 * decoder process), charged instead of the time the job took here, which would also count the
 * decoder's start and the machine's other load.
 */
export interface Costed {
  costMs: number;
}

function costOf(outcome: unknown): number | null {
  const cost = (outcome as Partial<Costed> | null)?.costMs;
  return typeof cost === 'number' && cost >= 0 ? cost : null;
}

/** A session asked for a second job while its first was not done: the queue holds one each. */
export class ImageQueueFullError extends Error {
  constructor() {
    super('a session has at most one image job queued');
    this.name = 'ImageQueueFullError';
  }
}

/** The session's image work was closed (its recorder stopped) before its job ran. */
export class ImageWorkClosedError extends Error {
  constructor() {
    super('image work closed');
    this.name = 'ImageWorkClosedError';
  }
}

/**
 * Weight of the newest job in a session's average cost per image: a few images (about five)
 * decide it, so a cap follows a client that changes what it sends, and one odd frame does not.
 */
const COST_WEIGHT = 0.2;
/** The lowest cap given; also the precision of caps (`flow` says e.g. 0.7 fps). */
const MIN_FPS = 0.1;
/** A cap is raised once the images got this much cheaper (hysteresis: one `flow`, not many). */
const RAISE_FACTOR = 1.25;

/**
 * The node's image work (decode, scale, encode of client images) as one bounded queue:
 * - at most `concurrency` jobs run at once, node-wide;
 * - each session has at most one job queued or running (its recorder processes frames in order,
 *   and whatever it has not processed stays in its bounded in-memory queue or in the spool), so
 *   the queue holds at most one job per live recorder;
 * - each session has a budget of `budgetMsPerS` milliseconds of image work per second, a token
 *   bucket holding one second of it. Every job is charged what it cost (`Costed`: the decoder's
 *   CPU time), else the time it took. A session in debt waits until its bucket refills: its
 *   recording lags (and catches up from the spool) while other sessions go on;
 * - among the jobs allowed to run, the session with the most budget left goes first (ties in
 *   arrival order), so a cheap session is never stuck behind costly ones for more than the jobs
 *   already running.
 * A session that offers more image work than its budget pays for (`arrived()` for each image it
 * sends, times its average cost, against the budget, over a second's bucket: the client's rate,
 * whatever the shared queue lets through) is asked to lower its frame rate to what its budget pays
 * for (`onCap` with `maxFps`, which becomes `flow` and then 4029 for a client that ignores it).
 * The cap follows the cost of its images: lowered when they cost more, raised once the budget
 * pays for a quarter more. The debt pacing above bounds the CPU whether or not the client listens.
 */
export class ImageWork {
  readonly concurrency: number;
  readonly budgetMsPerS: number;
  private readonly now: () => number;
  private active = 0;
  private readonly waiting: SessionImageWork[] = [];
  private readonly sessions = new Set<SessionImageWork>();
  /** Wakes the queue when the first session in debt has its budget back. */
  private timer: NodeJS.Timeout | undefined;

  constructor(options: ImageWorkOptions) {
    if (!(options.concurrency >= 1) || !(options.budgetMsPerS > 0)) {
      throw new RangeError('concurrency must be at least 1 and budgetMsPerS positive');
    }
    this.concurrency = Math.floor(options.concurrency);
    this.budgetMsPerS = options.budgetMsPerS;
    this.now = options.now ?? (() => performance.now());
  }

  get stats(): ImageWorkStats {
    const now = this.now();
    let overBudget = 0;
    for (const s of this.sessions) {
      if (s.balance(now) < 0) {
        overBudget++;
      }
    }
    return {
      concurrency: this.concurrency,
      running: this.active,
      waiting: this.waiting.length,
      overBudget,
    };
  }

  /**
   * The image work of one session (one recorder). `onCap` hears the frame rate the session's
   * budget pays for, when it is to be capped or its cap changes; `close()` it when the recorder
   * stops.
   */
  session(onCap: (maxFps: number) => void): SessionImageWork {
    const session = new SessionImageWork(this, onCap, this.budgetMsPerS, this.now);
    this.sessions.add(session);
    return session;
  }

  /** @internal A session's job is ready to run. */
  enqueue(session: SessionImageWork): void {
    this.waiting.push(session);
    this.pump();
  }

  /** @internal A session is closed: its waiting job leaves the queue. */
  forget(session: SessionImageWork): void {
    this.sessions.delete(session);
    const i = this.waiting.indexOf(session);
    if (i !== -1) {
      this.waiting.splice(i, 1);
    }
    this.pump();
  }

  private pump(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.active < this.concurrency && this.waiting.length > 0) {
      const now = this.now();
      let best = -1;
      let bestBalance = -Infinity;
      let soonestMs = Infinity;
      for (let i = 0; i < this.waiting.length; i++) {
        const balance = this.waiting[i].balance(now);
        if (balance < 0) {
          soonestMs = Math.min(soonestMs, (-balance * 1000) / this.budgetMsPerS);
        } else if (balance > bestBalance) {
          best = i;
          bestBalance = balance;
        }
      }
      if (best === -1) {
        // Every waiting session is in debt: nothing runs before the first has its budget back.
        this.timer = setTimeout(() => this.pump(), Math.ceil(soonestMs));
        return;
      }
      const [session] = this.waiting.splice(best, 1);
      this.active++;
      const started = this.now();
      session.start((outcome) => {
        this.active--;
        const now = this.now();
        session.charge(costOf(outcome) ?? now - started, now);
        this.pump();
      });
    }
  }
}

interface PendingJob {
  job: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** One session's share of the node's image work: its queue slot, its budget and its cap. */
export class SessionImageWork {
  /** Budget left in ms (negative: debt), as of `refilledAt`. */
  private tokens: number;
  private refilledAt: number;
  /** Average cost of one image, in ms. */
  private costMs: number | null = null;
  /** The cap asked of the session (fps), or null. */
  private cap: number | null = null;
  /** Image work offered by the client (ms), drained at the budget's rate, as of `offeredAt`. */
  private offered = 0;
  private offeredAt: number;
  private pending: PendingJob | null = null;
  private busy = false;
  private closed = false;
  private readonly capacity: number;

  constructor(
    private readonly work: ImageWork,
    private readonly onCap: (maxFps: number) => void,
    private readonly budgetMsPerS: number,
    private readonly now: () => number,
  ) {
    this.capacity = budgetMsPerS;
    this.tokens = budgetMsPerS;
    this.refilledAt = now();
    this.offeredAt = this.refilledAt;
  }

  /** The frame rate asked of the session now (null: not capped). */
  get maxFps(): number | null {
    return this.cap;
  }

  /** Average cost of one image so far, in ms (null before the first). */
  get averageCostMs(): number | null {
    return this.costMs;
  }

  /**
   * The client sent an image (called as it is stored, before any work on it: the client's rate,
   * not the queue's). Hot path: O(1), no allocation. Before the first image's cost is known it
   * counts nothing.
   */
  arrived(): void {
    const cost = this.costMs;
    if (cost === null || this.closed) {
      return;
    }
    const now = this.now();
    const elapsed = now - this.offeredAt;
    this.offeredAt = now;
    this.offered = Math.max(0, this.offered - (elapsed * this.budgetMsPerS) / 1000) + cost;
    if (this.offered > this.capacity) {
      const fps = this.fpsFor(cost);
      if (this.cap === null || fps < this.cap) {
        this.cap = fps;
        this.onCap(fps);
      }
    }
  }

  /**
   * Runs `job` when the queue and the session's budget allow. Rejects with ImageQueueFullError
   * when the session already has a job queued or running, and with ImageWorkClosedError once
   * closed.
   */
  run<T>(job: () => Promise<T>): Promise<T> {
    if (this.closed) {
      return Promise.reject(new ImageWorkClosedError());
    }
    if (this.pending || this.busy) {
      return Promise.reject(new ImageQueueFullError());
    }
    return new Promise<T>((resolve, reject) => {
      this.pending = { job, resolve: resolve as (value: unknown) => void, reject };
      this.work.enqueue(this);
    });
  }

  /** Leaves the queue: a waiting job is rejected; a running one finishes (it cannot be stopped). */
  close(): void {
    if (this.closed) {
      return;
    }
    this.closed = true;
    const pending = this.pending;
    this.pending = null;
    this.work.forget(this);
    pending?.reject(new ImageWorkClosedError());
  }

  /** @internal Budget left (ms) at `now`, refilled at the budget's rate up to one second of it. */
  balance(now: number): number {
    const elapsed = now - this.refilledAt;
    if (elapsed > 0) {
      this.tokens = Math.min(this.capacity, this.tokens + (elapsed * this.budgetMsPerS) / 1000);
    }
    this.refilledAt = now;
    return this.tokens;
  }

  /**
   * @internal Runs the waiting job; `done` hears its value or error once it settled, before its
   * caller does.
   */
  start(done: (outcome: unknown) => void): void {
    const pending = this.pending;
    this.pending = null;
    if (!pending) {
      done(null);
      return;
    }
    this.busy = true;
    let result: Promise<unknown>;
    try {
      result = pending.job();
    } catch (err) {
      result = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    void result.then(
      (value) => {
        this.busy = false;
        try {
          done(value);
        } finally {
          pending.resolve(value);
        }
      },
      (err: unknown) => {
        this.busy = false;
        try {
          done(err);
        } finally {
          pending.reject(err);
        }
      },
    );
  }

  /** @internal Charges a finished job's cost; a cap rises once the images got cheaper. */
  charge(ms: number, now: number): void {
    this.balance(now);
    this.tokens -= ms;
    this.costMs = this.costMs === null ? ms : this.costMs + COST_WEIGHT * (ms - this.costMs);
    if (this.closed || this.cap === null) {
      return;
    }
    const fps = this.fpsFor(this.costMs);
    if (fps >= this.cap * RAISE_FACTOR) {
      this.cap = fps;
      this.onCap(fps);
    }
  }

  /** The frame rate the budget pays for at `costMs` per image, in tenths. */
  private fpsFor(costMs: number): number {
    return Math.max(MIN_FPS, Math.floor((this.budgetMsPerS / Math.max(costMs, 0.001)) * 10) / 10);
  }
}
