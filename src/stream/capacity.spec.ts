import {
  admits,
  CapacityEstimate,
  capFor,
  type Demand,
  encodersSaturated,
  fairShare,
  type RecorderLoad,
  usedAt,
} from './capacity';

const at = (fps: number, weight = 1): Demand => ({ fps, weight });

describe('fairShare', () => {
  it('is unbounded while every session fits at its declared rate', () => {
    expect(fairShare([at(10), at(30)], 40)).toBe(Infinity);
    expect(fairShare([], 0)).toBe(Infinity);
  });

  it('splits what is left after the small sessions among the large ones', () => {
    // 10 + 2 × share = 50 → share 20: the 10 fps session keeps its rate.
    expect(fairShare([at(30), at(10), at(30)], 50)).toBe(20);
    expect(usedAt([at(30), at(10), at(30)], 20)).toBe(50);
  });

  it('weighs each frame by its pixels', () => {
    // A 1280×960 session (weight 4) at share s and a 640×480 one at s: 5 s = 50.
    expect(fairShare([at(30, 4), at(30, 1)], 50)).toBe(10);
  });

  it('gives every session the same share when none fits', () => {
    const demands = Array.from({ length: 100 }, () => at(30));
    expect(fairShare(demands, 300)).toBe(3);
  });

  it('never exceeds the budget, whatever the mix', () => {
    for (let run = 0; run < 200; run++) {
      const demands = Array.from({ length: 1 + (run % 17) }, (_, i) =>
        at(1 + ((i * 7 + run) % 40), 0.25 + ((i * 3 + run) % 5) / 2),
      );
      const budget = 10 + ((run * 13) % 400);
      const share = fairShare(demands, budget);
      const used = usedAt(demands, share);
      if (share === Infinity) {
        expect(used).toBeLessThanOrEqual(budget + 1e-9);
      } else {
        expect(used).toBeCloseTo(budget, 6);
      }
    }
  });
});

describe('admits', () => {
  const current = Array.from({ length: 9 }, () => at(30));

  it('admits everyone who fits at the declared rate, under either policy', () => {
    expect(admits(current, at(30), 300, 'refuse', 5)).toBe(true);
    expect(admits(current, at(30), 300, 'throttle', 5)).toBe(true);
  });

  it('refuses beyond the budget under `refuse`', () => {
    expect(admits(current, at(31), 300, 'refuse', 5)).toBe(false);
  });

  it('under `throttle`, admits while the share stays at or above the minimum', () => {
    const many = Array.from({ length: 59 }, () => at(30));
    // 60 sessions in 300 → 5 each: admitted; the 61st would leave 4.9.
    expect(admits(many, at(30), 300, 'throttle', 5)).toBe(true);
    expect(admits([...many, at(30)], at(30), 300, 'throttle', 5)).toBe(false);
  });

  it('admits a session declaring less than the minimum while its own rate fits in the share', () => {
    const many = Array.from({ length: 99 }, () => at(30));
    // share 3: a 2 fps session is not capped at all; a 30 fps one would get 3 < 5.
    expect(admits(many, at(2), 300, 'throttle', 5)).toBe(true);
    expect(admits(many, at(30), 300, 'throttle', 5)).toBe(false);
  });
});

describe('capFor', () => {
  it('caps only sessions above the share, to whole frames per second, at least 1', () => {
    expect(capFor(10, Infinity)).toBeNull();
    expect(capFor(10, 12.5)).toBeNull();
    expect(capFor(30, 12.5)).toBe(12);
    expect(capFor(30, 0.2)).toBe(1);
  });
});

describe('CapacityEstimate', () => {
  it('follows saturated samples up and down, smoothed', () => {
    const estimate = new CapacityEstimate(300, false);
    expect(estimate.source).toBe('initial');
    for (let i = 0; i < 30; i++) {
      estimate.add({ encoded: 200, seconds: 1, saturated: true, spare: false });
    }
    expect(estimate.fps).toBeCloseTo(200, 0);
    expect(estimate.source).toBe('measured');
    estimate.add({ encoded: 400, seconds: 1, saturated: true, spare: false });
    expect(estimate.fps).toBeGreaterThan(200);
    expect(estimate.fps).toBeLessThan(400);
  });

  it('is only raised by unsaturated samples: a quiet node has not lost capacity', () => {
    const estimate = new CapacityEstimate(300, false);
    estimate.add({ encoded: 50, seconds: 1, saturated: false, spare: false });
    expect(estimate.fps).toBe(300);
    expect(estimate.source).toBe('initial');
    estimate.add({ encoded: 700, seconds: 2, saturated: false, spare: false });
    expect(estimate.fps).toBe(350);
  });

  it('creeps back up with cores to spare after a busy spell lowered it, to the highest known', () => {
    const estimate = new CapacityEstimate(300, false);
    for (let i = 0; i < 30; i++) {
      estimate.add({ encoded: 80, seconds: 1, saturated: true, spare: false });
    }
    expect(estimate.fps).toBeLessThan(90);
    // Admission now keeps the encoders at ~60 fps: no sample exceeds the figure by itself.
    estimate.add({ encoded: 60, seconds: 1, saturated: false, spare: false });
    expect(estimate.fps).toBeLessThan(90);
    for (let i = 0; i < 25; i++) {
      estimate.add({ encoded: 60, seconds: 1, saturated: false, spare: true });
    }
    expect(estimate.fps).toBeGreaterThan(160);
    for (let i = 0; i < 100; i++) {
      estimate.add({ encoded: 60, seconds: 1, saturated: false, spare: true });
    }
    expect(estimate.fps).toBe(300);
  });

  it('ignores a saturated second that encoded nothing', () => {
    const estimate = new CapacityEstimate(300, false);
    expect(estimate.add({ encoded: 0, seconds: 1, saturated: true, spare: false })).toBe(false);
    expect(estimate.fps).toBe(300);
  });

  it('keeps a configured figure, while still reporting the measured rate', () => {
    const estimate = new CapacityEstimate(120, true);
    expect(estimate.add({ encoded: 40, seconds: 1, saturated: true, spare: false })).toBe(false);
    expect(estimate.fps).toBe(120);
    expect(estimate.lastRate).toBe(40);
    expect(estimate.source).toBe('configured');
  });
});

describe('encodersSaturated', () => {
  const keepingUp: RecorderLoad = { backlogFrames: 2, fromSpool: false, started: true };
  const behind: RecorderLoad = { backlogFrames: 40, fromSpool: false, started: true };
  const catchingUp: RecorderLoad = { backlogFrames: 5, fromSpool: true, started: true };
  const waitingForSlot: RecorderLoad = { backlogFrames: 300, fromSpool: true, started: false };

  it('needs the cores busy and a running recorder behind per core', () => {
    expect(encodersSaturated([behind, catchingUp, keepingUp], 2, 0.95)).toBe(true);
    expect(encodersSaturated([behind, catchingUp], 2, 0.5)).toBe(false);
    // One behind is limited by its own encoder, not the node's.
    expect(encodersSaturated([behind, keepingUp, keepingUp], 2, 0.99)).toBe(false);
  });

  it('does not count recordings waiting for an encoder slot: their frames wait for a slot', () => {
    const waiting = Array.from({ length: 12 }, () => waitingForSlot);
    expect(encodersSaturated([...Array(36).fill(keepingUp), ...waiting], 2, 0.99)).toBe(false);
    expect(encodersSaturated([behind, ...waiting], 2, 0.99)).toBe(false);
    expect(encodersSaturated([behind, behind, ...waiting], 2, 0.99)).toBe(true);
  });

  it('keeps a node whose capped sessions keep up from lowering its estimate', () => {
    // 48 sessions for 36 slots on busy cores: the running encoders only get what the capped
    // sessions send (44 frames/s), and keep up. Those seconds say nothing of the capacity.
    const estimate = new CapacityEstimate(300, false);
    const recorders = [...Array(36).fill(keepingUp), ...Array(12).fill(waitingForSlot)];
    for (let second = 0; second < 30; second++) {
      const saturated = encodersSaturated(recorders, 2, 0.97);
      estimate.add({ encoded: 44, seconds: 1, saturated, spare: false });
    }
    expect(estimate.fps).toBe(300);
  });
});
