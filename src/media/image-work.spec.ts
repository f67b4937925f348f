import {
  ImageQueueFullError,
  ImageWork,
  ImageWorkClosedError,
  type SessionImageWork,
} from './image-work';

/** A job the test finishes by hand, after moving the clock by its cost. */
interface Job {
  name: string;
  finish(): void;
  fail(err: Error): void;
}

describe('ImageWork', () => {
  let clock = 0;
  let started: Job[];

  beforeEach(() => {
    jest.useFakeTimers();
    clock = 0;
    started = [];
  });

  afterEach(() => {
    jest.useRealTimers();
  });

  const work = (concurrency: number, budgetMsPerS: number) =>
    new ImageWork({ concurrency, budgetMsPerS, now: () => clock });

  /** Moves the clock and the timers together, then lets promise callbacks run. */
  const advance = async (ms: number) => {
    clock += ms;
    jest.advanceTimersByTime(ms);
    await flush();
  };
  const flush = async () => {
    for (let i = 0; i < 5; i++) {
      await Promise.resolve();
    }
  };

  /** Queues a job named `name` on `session`; it starts when the queue runs it. */
  const submit = (session: SessionImageWork, name: string) =>
    session.run(
      () =>
        new Promise<string>((resolve, reject) => {
          started.push({ name, finish: () => resolve(name), fail: reject });
        }),
    );

  /** Finishes the running job named `name` after it took `ms`. */
  const finish = async (name: string, ms: number) => {
    await advance(ms);
    const job = started.find((j) => j.name === name);
    if (!job) {
      throw new Error(`${name} is not running`);
    }
    job.finish();
    await flush();
  };

  it('runs at most `concurrency` jobs at once, node-wide', async () => {
    const w = work(2, 1000);
    const sessions = [1, 2, 3].map(() => w.session(() => undefined));
    const done = sessions.map((s, i) => submit(s, `s${i}`));
    expect(started.map((j) => j.name)).toEqual(['s0', 's1']);
    expect(w.stats).toMatchObject({ running: 2, waiting: 1 });
    await finish('s0', 10);
    expect(started.map((j) => j.name)).toEqual(['s0', 's1', 's2']);
    await finish('s1', 0);
    await finish('s2', 0);
    await expect(Promise.all(done)).resolves.toEqual(['s0', 's1', 's2']);
    expect(w.stats).toMatchObject({ running: 0, waiting: 0 });
  });

  it('holds one job per session: a second is refused, a closed session gets none', async () => {
    const w = work(1, 1000);
    const busy = w.session(() => undefined);
    const s = w.session(() => undefined);
    const first = submit(busy, 'busy');
    const waiting = submit(s, 'waiting');
    await expect(submit(s, 'second')).rejects.toBeInstanceOf(ImageQueueFullError);
    await expect(submit(busy, 'second')).rejects.toBeInstanceOf(ImageQueueFullError);
    expect(w.stats.waiting).toBe(1);
    s.close();
    await expect(waiting).rejects.toBeInstanceOf(ImageWorkClosedError);
    await expect(submit(s, 'after')).rejects.toBeInstanceOf(ImageWorkClosedError);
    expect(w.stats.waiting).toBe(0);
    await finish('busy', 5);
    await expect(first).resolves.toBe('busy');
    expect(started.map((j) => j.name)).toEqual(['busy']);
  });

  it('passes a failed job on to its caller and goes on with the next', async () => {
    const w = work(1, 1000);
    const a = w.session(() => undefined);
    const b = w.session(() => undefined);
    const failing = submit(a, 'a');
    const next = submit(b, 'b');
    started[0].fail(new Error('cannot decode'));
    await expect(failing).rejects.toThrow('cannot decode');
    await finish('b', 1);
    await expect(next).resolves.toBe('b');
  });

  it('charges each job its time: a session in debt waits until its budget refills', async () => {
    const caps: Array<number | null> = [];
    const w = work(1, 100);
    const s = w.session((fps) => caps.push(fps));
    const first = submit(s, 'first');
    await finish('first', 250);
    await first;
    // 100 ms of budget, 250 ms spent: 150 ms of debt, paid back in 1.5 s.
    expect(caps).toEqual([0.4]);
    expect(w.stats.overBudget).toBe(1);
    const second = submit(s, 'second');
    await advance(1_499);
    expect(started.map((j) => j.name)).toEqual(['first']);
    await advance(1);
    expect(started.map((j) => j.name)).toEqual(['first', 'second']);
    await finish('second', 50);
    await expect(second).resolves.toBe('second');
  });

  it('charges the cost a job reports (measured where it ran) rather than the time it took here', async () => {
    const caps: Array<number | null> = [];
    const w = work(1, 100);
    const s = w.session((fps) => caps.push(fps));
    // 2 s here (a decoder starting, a busy machine), 60 ms of decoding: within budget.
    const costed = s.run(
      () => new Promise((resolve) => setTimeout(() => resolve({ costMs: 60 }), 2_000)),
    );
    await advance(2_000);
    await expect(costed).resolves.toEqual({ costMs: 60 });
    expect(s.averageCostMs).toBe(60);
    // A failure that says its cost is charged that too.
    const failed = s.run(() => Promise.reject(Object.assign(new Error('bad'), { costMs: 500 })));
    await expect(failed).rejects.toThrow('bad');
    // In debt now; its images average 148 ms (60, then 500 weighted 0.2): 100 ms/s pays 0.6 fps.
    expect(s.averageCostMs).toBe(148);
    expect(caps).toEqual([0.6]);
  });

  it('lowers the cap when images cost more, and lifts it after a second of unused budget', async () => {
    const caps: Array<number | null> = [];
    const w = work(1, 300);
    const s = w.session((fps) => caps.push(fps));
    const run = async (name: string, ms: number, waitMs = 0) => {
      const p = submit(s, name);
      await advance(waitMs);
      await finish(name, ms);
      await p;
    };
    await run('a', 400);
    expect(caps).toEqual([0.7]);
    // Still in debt, costlier: the cap goes down.
    await run('b', 1_200, 500);
    expect(caps.at(-1)).toBeLessThan(0.7);
    const lowered = caps.length;
    // A whole second of budget unused (the client slowed down): the cap is lifted.
    await run('c', 10, 5_000);
    expect(caps.length).toBe(lowered + 1);
    expect(caps.at(-1)).toBeNull();
    expect(s.maxFps).toBeNull();
  });

  it('keeps the cap of a session that sends exactly what its budget pays for', async () => {
    const caps: Array<number | null> = [];
    const w = work(1, 200);
    const s = w.session((fps) => caps.push(fps));
    const first = submit(s, 'x0');
    await finish('x0', 400);
    await first;
    expect(caps).toEqual([0.5]);
    // At 0.5 fps of 400 ms images the budget is spent as it refills: never a second unused.
    for (let i = 1; i <= 5; i++) {
      const p = submit(s, `x${i}`);
      await advance(1_600);
      await finish(`x${i}`, 400);
      await p;
    }
    expect(caps).toEqual([0.5]);
  });

  it('runs the session with the most budget left first, so cheap sessions pass costly ones', async () => {
    const w = work(1, 400);
    const costly1 = w.session(() => undefined);
    const costly2 = w.session(() => undefined);
    const cheap = w.session(() => undefined);
    const jobs = [submit(costly1, 'costly1'), submit(costly2, 'costly2')];
    await finish('costly1', 300);
    // costly1 queues its next image before the cheap session does.
    jobs.push(submit(costly1, 'costly1 again'));
    await advance(10);
    jobs.push(submit(cheap, 'cheap'));
    await finish('costly2', 290);
    expect(started.map((j) => j.name)).toEqual(['costly1', 'costly2', 'cheap']);
    await finish('cheap', 10);
    expect(started.map((j) => j.name)).toEqual(['costly1', 'costly2', 'cheap', 'costly1 again']);
    await finish('costly1 again', 300);
    await Promise.all(jobs);
  });

  it('lets other sessions run while one in debt waits, whatever their order of arrival', async () => {
    const w = work(1, 100);
    const heavy = w.session(() => undefined);
    const light = w.session(() => undefined);
    const first = submit(heavy, 'heavy');
    await finish('heavy', 1_000);
    await first;
    const heavyAgain = submit(heavy, 'heavy again');
    const lightJob = submit(light, 'light');
    expect(started.map((j) => j.name)).toEqual(['heavy', 'light']);
    await finish('light', 5);
    await lightJob;
    // The heavy session's 900 ms of debt take 9 s to pay back.
    await advance(8_900);
    expect(started.map((j) => j.name)).toEqual(['heavy', 'light']);
    await advance(100);
    expect(started.map((j) => j.name)).toEqual(['heavy', 'light', 'heavy again']);
    await finish('heavy again', 5);
    await heavyAgain;
  });
});
