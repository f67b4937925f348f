import { FrameRateLimiter, type FrameVerdict } from './frame-rate-limiter';

const FPS = 30;
const KBPS = 8_000; // 1 MB/s
const GRACE_MS = 3_000;
const SMALL = 10_000; // bytes: 30 fps of these is 300 kB/s, well under KBPS

interface Run {
  counts: Record<FrameVerdict, number>;
  /** Times at which each non-ok verdict was returned. */
  flowAt: number[];
  exceededAt: number[];
  endMs: number;
}

/** Deterministic jitter source (LCG), so a failure replays. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * Feeds frames at `fps` for `durationMs` starting at `startMs`. With `jitterShare`, each frame
 * arrives up to that share of an interval early or late around its regular time (a steady
 * capture clock delivered by a jittery network).
 */
function drive(
  limiter: FrameRateLimiter,
  opts: { fps: number; durationMs: number; startMs?: number; bytes?: number; jitterShare?: number },
  run: Run = { counts: { ok: 0, flow: 0, exceeded: 0 }, flowAt: [], exceededAt: [], endMs: 0 },
): Run {
  const start = opts.startMs ?? run.endMs;
  const interval = 1000 / opts.fps;
  const rnd = prng(42);
  const n = Math.floor(opts.durationMs / interval);
  let last = start;
  for (let i = 0; i < n; i++) {
    const jitter = opts.jitterShare ? (rnd() * 2 - 1) * opts.jitterShare * interval : 0;
    const at = Math.max(last, start + i * interval + jitter);
    last = at;
    const verdict = limiter.onFrame(opts.bytes ?? SMALL, at);
    run.counts[verdict]++;
    if (verdict === 'flow') {
      run.flowAt.push(at);
    } else if (verdict === 'exceeded') {
      run.exceededAt.push(at);
    }
  }
  run.endMs = start + n * interval;
  return run;
}

function limiter(graceMs = GRACE_MS): FrameRateLimiter {
  return new FrameRateLimiter({ maxFps: FPS, maxKbps: KBPS, graceMs });
}

describe('FrameRateLimiter', () => {
  it('answers ok to every frame of a client under its limits', () => {
    const run = drive(limiter(), { fps: FPS * 0.9, durationMs: 60_000, startMs: 1_000 });
    expect(run.counts).toEqual({ ok: run.counts.ok, flow: 0, exceeded: 0 });
    expect(run.counts.ok).toBeGreaterThan(1_500);
  });

  it('answers ok to a client at exactly its frame rate, with network jitter', () => {
    const run = drive(limiter(), { fps: FPS, durationMs: 60_000, jitterShare: 0.45 });
    expect(run.counts.flow).toBe(0);
    expect(run.counts.exceeded).toBe(0);
  });

  it('sends flow once for sustained excess, then exceeded once the grace has passed', () => {
    const run = drive(limiter(), { fps: FPS * 2, durationMs: 10_000, startMs: 0 });
    expect(run.flowAt).toHaveLength(1);
    // A full bucket (1 s of frames) absorbs the first second at 2x.
    expect(run.flowAt[0]).toBeGreaterThan(900);
    expect(run.flowAt[0]).toBeLessThan(1_200);
    expect(run.exceededAt.length).toBeGreaterThan(0);
    const firstExceeded = run.exceededAt[0];
    expect(firstExceeded - run.flowAt[0]).toBeGreaterThan(GRACE_MS);
    expect(firstExceeded - run.flowAt[0]).toBeLessThan(GRACE_MS + 100);
  });

  it('keeps answering exceeded once exceeded, even if the client slows down', () => {
    const l = limiter(500);
    const run = drive(l, { fps: FPS * 3, durationMs: 3_000, startMs: 0 });
    expect(run.exceededAt.length).toBeGreaterThan(0);
    expect(l.onFrame(SMALL, run.endMs + 60_000)).toBe('exceeded');
  });

  it('never flows a client a little fast by its timer (setInterval(33) for 30 fps)', () => {
    const run = drive(limiter(), { fps: 1000 / 33, durationMs: 600_000, startMs: 0 });
    expect(run.counts.flow).toBe(0);
    expect(run.counts.exceeded).toBe(0);
  });

  it.each([1.1, 1.2])(
    'closes a client that stays %sx over the limit instead of flowing it forever',
    (mult) => {
      const run = drive(limiter(), { fps: FPS * mult, durationMs: 60_000, startMs: 0 });
      expect(run.flowAt).toHaveLength(1);
      expect(run.exceededAt.length).toBeGreaterThan(0);
    },
  );

  it('tolerates a burst of twice the rate for most of a second', () => {
    const l = limiter();
    let run = drive(l, { fps: FPS * 2, durationMs: 900, startMs: 0 });
    run = drive(l, { fps: FPS * 0.9, durationMs: 20_000 }, run);
    expect(run.counts.flow).toBe(0);
    expect(run.counts.exceeded).toBe(0);
  });

  it('tolerates a clump of a whole second of frames after a network stall', () => {
    const l = limiter();
    let run = drive(l, { fps: FPS, durationMs: 5_000, startMs: 0 });
    // 1 s stall, then the 30 buffered frames arrive within 10 ms, then the regular pace again.
    const stallEnd = run.endMs + 1_000;
    for (let i = 0; i < FPS; i++) {
      expect(l.onFrame(SMALL, stallEnd + i / 3)).toBe('ok');
    }
    run = drive(l, { fps: FPS, durationMs: 10_000, startMs: stallEnd + 34 }, run);
    expect(run.counts.flow).toBe(0);
    expect(run.counts.exceeded).toBe(0);
  });

  it('flows at the first frame beyond the burst allowance', () => {
    const l = limiter();
    const verdicts: FrameVerdict[] = [];
    // Everything at one instant: the bucket holds one second of frames (30), plus the frame that
    // may overdraw it.
    for (let i = 0; i < FPS + 5; i++) {
      verdicts.push(l.onFrame(SMALL, 1_000));
    }
    expect(verdicts.indexOf('flow')).toBe(FPS + 1);
    expect(verdicts.filter((v) => v === 'flow')).toHaveLength(1);
    expect(l.reason).toBe('fps');
  });

  it('does not close a client that slows to exactly the limit after a flow', () => {
    const l = limiter();
    let run = drive(l, { fps: FPS * 2, durationMs: 2_000, startMs: 0 });
    expect(run.flowAt).toHaveLength(1);
    run = drive(l, { fps: FPS, durationMs: 30_000, jitterShare: 0.45 }, run);
    expect(run.counts.exceeded).toBe(0);
  });

  it('resets after recovery, so a later burst gets a fresh flow before any exceeded', () => {
    const l = limiter();
    let run = drive(l, { fps: FPS * 2, durationMs: 2_000, startMs: 0 });
    expect(run.flowAt).toHaveLength(1);
    // Complies within the grace: half the rate for 3 s refills the bucket.
    run = drive(l, { fps: FPS / 2, durationMs: 3_000 }, run);
    expect(run.counts.exceeded).toBe(0);
    const flowsBefore = run.flowAt.length;
    run = drive(l, { fps: FPS * 2, durationMs: 2_000 }, run);
    expect(run.flowAt.length).toBe(flowsBefore + 1);
    expect(run.counts.exceeded).toBe(0);
  });

  it('limits bandwidth as well: big frames at a legal frame rate', () => {
    const l = limiter();
    // 20 fps x 100 kB = 2 MB/s against 1 MB/s.
    const run = drive(l, { fps: 20, durationMs: 10_000, startMs: 0, bytes: 100_000 });
    expect(run.flowAt).toHaveLength(1);
    expect(l.reason).toBe('bandwidth');
    expect(run.exceededAt.length).toBeGreaterThan(0);
  });

  it('lets one frame larger than the whole byte bucket through, then makes it wait', () => {
    const l = new FrameRateLimiter({ maxFps: 30, maxKbps: 800, graceMs: 1_000 }); // 100 kB/s
    expect(l.onFrame(250_000, 0)).toBe('ok');
    // The bucket is now 150 kB in debt, 140 kB still 100 ms later: that frame is over the limit.
    expect(l.onFrame(1_000, 100)).toBe('flow');
    expect(l.reason).toBe('bandwidth');
    // The flow forgave the debt down to the cushion, so a client that paces itself goes on.
    expect(l.onFrame(1_000, 200)).toBe('ok');
  });

  it('rejects nonsensical options', () => {
    expect(() => new FrameRateLimiter({ maxFps: 0, maxKbps: 1, graceMs: 0 })).toThrow(RangeError);
    expect(() => new FrameRateLimiter({ maxFps: 1, maxKbps: NaN, graceMs: 0 })).toThrow(RangeError);
    expect(() => new FrameRateLimiter({ maxFps: 1, maxKbps: 1, graceMs: -1 })).toThrow(RangeError);
  });

  describe('setMaxFps: the node lowers a session rate (capacity, image cost)', () => {
    it('gives a client that keeps the old rate the grace period, then exceeds it', () => {
      const l = limiter();
      let run = drive(l, { fps: FPS, durationMs: 2_000, startMs: 0 });
      l.setMaxFps(10, run.endMs);
      const loweredAt = run.endMs;
      run = drive(l, { fps: FPS, durationMs: GRACE_MS + 2_000 }, run);
      expect(run.flowAt).toHaveLength(0);
      expect(run.exceededAt.length).toBeGreaterThan(0);
      expect(run.exceededAt[0] - loweredAt).toBeGreaterThan(GRACE_MS);
    });

    it('never fails a client that comes down to the new rate, even with jitter', () => {
      const l = limiter();
      let run = drive(l, { fps: FPS, durationMs: 2_000, startMs: 0 });
      l.setMaxFps(10, run.endMs);
      run = drive(l, { fps: 10, durationMs: 60_000, jitterShare: 0.3 }, run);
      expect(run.counts.exceeded).toBe(0);
      expect(l.maxFps).toBe(10);
    });

    it('lets the old rate through again once raised', () => {
      const l = limiter();
      l.setMaxFps(5, 0);
      let run = drive(l, { fps: 5, durationMs: 3_000, startMs: 0 });
      l.setMaxFps(FPS, run.endMs);
      run = drive(l, { fps: FPS, durationMs: 20_000 }, run);
      expect(run.counts.exceeded).toBe(0);
      expect(run.flowAt).toHaveLength(0);
    });

    it('refuses a rate that is not positive', () => {
      expect(() => limiter().setMaxFps(0, 0)).toThrow(RangeError);
    });
  });
});
