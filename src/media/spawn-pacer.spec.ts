import { SpawnPacer } from './spawn-pacer';

describe('SpawnPacer', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('runs a lone start at once, then spaces a burst out in arrival order', () => {
    jest.useFakeTimers();
    const pacer = new SpawnPacer(25);
    const started: Array<[number, number]> = [];
    const t0 = performance.now();
    for (const n of [1, 2, 3, 4]) {
      pacer.schedule(() => started.push([n, performance.now() - t0]));
    }
    expect(started.map(([n]) => n)).toEqual([1]);
    expect(pacer.waiting).toBe(3);
    jest.advanceTimersByTime(24);
    expect(started).toHaveLength(1);
    jest.advanceTimersByTime(1);
    expect(started.map(([n]) => n)).toEqual([1, 2]);
    jest.advanceTimersByTime(50);
    expect(started.map(([n]) => n)).toEqual([1, 2, 3, 4]);
    const at = started.map(([, t]) => t);
    for (let i = 1; i < at.length; i++) {
      expect(at[i] - at[i - 1]).toBeGreaterThanOrEqual(25);
    }
    expect(pacer.waiting).toBe(0);
  });

  it('never runs a start cancelled before its turn, and keeps the others in order', () => {
    jest.useFakeTimers();
    const pacer = new SpawnPacer(10);
    const started: number[] = [];
    pacer.schedule(() => started.push(1));
    pacer.schedule(() => started.push(2));
    const cancel3 = pacer.schedule(() => started.push(3));
    pacer.schedule(() => started.push(4));
    cancel3();
    jest.advanceTimersByTime(100);
    expect(started).toEqual([1, 2, 4]);
    // Cancelling after the start ran changes nothing.
    cancel3();
    expect(pacer.waiting).toBe(0);
  });

  it('goes at once again once the spacing has passed with nothing queued', () => {
    jest.useFakeTimers();
    const pacer = new SpawnPacer(10);
    const started: number[] = [];
    pacer.schedule(() => started.push(1));
    jest.advanceTimersByTime(10);
    pacer.schedule(() => started.push(2));
    expect(started).toEqual([1, 2]);
  });
});
