import { AdaptiveCapture, type AdaptDecision } from './adaptive-capture';

/** Feeds samples every 250 ms from `from` to `to` (ms) with a fixed window; returns the last. */
function run(
  adaptive: AdaptiveCapture,
  from: number,
  to: number,
  outboxDepth: number,
  maxFps = 30,
): AdaptDecision[] {
  const decisions: AdaptDecision[] = [];
  for (let now = from; now <= to; now += 250) {
    decisions.push(adaptive.update({ now, maxFps, outboxDepth }));
  }
  return decisions;
}

const changes = (decisions: AdaptDecision[]) =>
  decisions.filter((d) => d.changed).map(({ fps, quality, reason }) => ({ fps, quality, reason }));

describe('AdaptiveCapture', () => {
  it('keeps the target while the window stays small', () => {
    const adaptive = new AdaptiveCapture({ target: { fps: 10, quality: 0.7 } });
    expect(changes(run(adaptive, 0, 10_000, 3))).toEqual([]);
    expect(adaptive.settings).toEqual({ fps: 10, quality: 0.7 });
  });

  it('lowers quality first, then fps, one step per second while the window grows', () => {
    const adaptive = new AdaptiveCapture({
      target: { fps: 10, quality: 0.7 },
      floor: { fps: 2, quality: 0.3 },
    });
    // 100 messages unacknowledged: far above 2 s at any of these rates.
    const steps = changes(run(adaptive, 0, 10_000, 100));
    expect(steps).toEqual([
      { fps: 10, quality: 0.6, reason: 'pressure' },
      { fps: 10, quality: 0.5, reason: 'pressure' },
      { fps: 10, quality: 0.4, reason: 'pressure' },
      { fps: 10, quality: 0.3, reason: 'pressure' },
      { fps: 5, quality: 0.3, reason: 'pressure' },
      { fps: 2.5, quality: 0.3, reason: 'pressure' },
      { fps: 2, quality: 0.3, reason: 'pressure' },
    ]);
    // At the floor it stays there however long the pressure lasts.
    expect(changes(run(adaptive, 10_250, 20_000, 100))).toEqual([]);
  });

  it('comes back up only after a calm spell, fps first, one step per spell', () => {
    const adaptive = new AdaptiveCapture({ stepUpMs: 3000 });
    run(adaptive, 0, 10_000, 100);
    expect(adaptive.settings).toEqual({ fps: 2, quality: 0.3 });
    const back = run(adaptive, 10_250, 40_000, 0);
    expect(changes(back)).toEqual([
      { fps: 4, quality: 0.3, reason: 'recovered' },
      { fps: 8, quality: 0.3, reason: 'recovered' },
      { fps: 10, quality: 0.3, reason: 'recovered' },
      { fps: 10, quality: 0.4, reason: 'recovered' },
      { fps: 10, quality: 0.5, reason: 'recovered' },
      { fps: 10, quality: 0.6, reason: 'recovered' },
      { fps: 10, quality: 0.7, reason: 'recovered' },
    ]);
    // The first step up comes a full calm spell after the pressure ended, not before.
    const firstUp = back.findIndex((d) => d.changed);
    expect(10_250 + firstUp * 250).toBeGreaterThanOrEqual(10_250 + 3000);
  });

  it('holds its settings while the window is between the low and the high water (hysteresis)', () => {
    const adaptive = new AdaptiveCapture({ highWaterS: 2, lowWaterS: 0.5 });
    run(adaptive, 0, 1_000, 100);
    const lowered = adaptive.settings;
    expect(lowered.quality).toBeLessThan(0.7);
    // 10 fps: the high water is 20 messages, the low water 5; 12 is neither pressure nor calm.
    expect(changes(run(adaptive, 1_250, 30_000, 12))).toEqual([]);
    expect(adaptive.settings).toEqual(lowered);
  });

  it('a calm spell interrupted by pressure starts over', () => {
    const adaptive = new AdaptiveCapture({ stepUpMs: 3000 });
    run(adaptive, 0, 1_000, 100);
    const decisions: AdaptDecision[] = [];
    for (let t = 2_000; t < 20_000; t += 2_500) {
      // 2 s calm, then one sample of pressure: never 3 s calm in a row.
      decisions.push(...run(adaptive, t, t + 2_000, 0));
      decisions.push(adaptive.update({ now: t + 2_250, maxFps: 30, outboxDepth: 100 }));
    }
    expect(decisions.filter((d) => d.reason === 'recovered')).toEqual([]);
  });

  it('obeys flow at once, leaving room for the audio chunks, and climbs back in steps', () => {
    const adaptive = new AdaptiveCapture({ target: { fps: 10 }, reservedFps: 10, stepUpMs: 3000 });
    expect(adaptive.update({ now: 0, maxFps: 30, outboxDepth: 0 })).toMatchObject({
      fps: 10,
      changed: false,
    });
    expect(adaptive.update({ now: 250, maxFps: 15, outboxDepth: 0 })).toEqual({
      fps: 5,
      quality: 0.7,
      changed: true,
      reason: 'flow',
    });
    // Paused (insufficient_storage), then allowed again.
    expect(adaptive.update({ now: 500, maxFps: 0, outboxDepth: 0 })).toMatchObject({
      fps: 0,
      reason: 'flow',
    });
    const back = changes(run(adaptive, 750, 15_000, 0, 30));
    expect(back).toEqual([
      { fps: 2, quality: 0.7, reason: 'recovered' },
      { fps: 4, quality: 0.7, reason: 'recovered' },
      { fps: 8, quality: 0.7, reason: 'recovered' },
      { fps: 10, quality: 0.7, reason: 'recovered' },
    ]);
  });

  it('never climbs above what the server allows', () => {
    const adaptive = new AdaptiveCapture({ target: { fps: 30 }, stepUpMs: 1000 });
    adaptive.update({ now: 0, maxFps: 6, outboxDepth: 0 });
    run(adaptive, 250, 30_000, 0, 6);
    expect(adaptive.settings.fps).toBe(6);
  });
});
