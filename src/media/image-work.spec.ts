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
    const w = work(1, 100);
    const s = w.session(() => undefined);
    const first = submit(s, 'first');
    await finish('first', 250);
    await first;
    // 100 ms of budget, 250 ms spent: 150 ms of debt, paid back in 1.5 s.
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
    const w = work(1, 100);
    const s = w.session(() => undefined);
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
    // Its images average 148 ms now (60, then 500 weighted 0.2), and it is in debt.
    expect(s.averageCostMs).toBe(148);
    expect(w.stats.overBudget).toBe(1);
  });

  /** One job of `ms` on `s`, run at once. */
  const runJob = async (s: SessionImageWork, name: string, ms: number) => {
    const p = submit(s, name);
    await finish(name, ms);
    await p;
  };

  /** `count` images sent at `fps`. */
  const send = async (s: SessionImageWork, count: number, fps: number) => {
    for (let i = 0; i < count; i++) {
      s.arrived();
      await advance(1000 / fps);
    }
  };

  it('caps a session that sends more image work than its budget pays for, at the rate it pays for', async () => {
    const caps: number[] = [];
    const w = work(1, 200);
    const s = w.session((fps) => caps.push(fps));
    // Nothing is known before its first image is decoded.
    await send(s, 30, 15);
    expect(caps).toEqual([]);
    await runJob(s, 'first', 100);
    // 15 fps of 100 ms images offer 1 500 ms/s: past a second's budget on the third image.
    await send(s, 2, 15);
    expect(caps).toEqual([]);
    await send(s, 1, 15);
    expect(caps).toEqual([2]);
    expect(s.maxFps).toBe(2);
    await send(s, 30, 15);
    expect(caps).toEqual([2]);
  });

  it('does not cap a session within its budget, however slowly the shared queue serves it', async () => {
    const caps: number[] = [];
    const w = work(1, 200);
    const s = w.session((fps) => caps.push(fps));
    await runJob(s, 'first', 100);
    // 2 fps of 100 ms images: exactly the budget, for a minute.
    await send(s, 120, 2);
    expect(caps).toEqual([]);
    expect(s.maxFps).toBeNull();
  });

  it('lowers the cap when images cost more, and raises it once they cost a quarter less', async () => {
    const caps: number[] = [];
    const w = work(1, 300);
    const s = w.session((fps) => caps.push(fps));
    await runJob(s, 'a', 100);
    await send(s, 10, 30);
    expect(caps).toEqual([3]);
    // 600 ms: the average is 200 ms, paid for at 1.5 fps; the next images sent lower the cap.
    await advance(10_000);
    await runJob(s, 'b', 600);
    expect(caps).toEqual([3]);
    await send(s, 10, 30);
    expect(caps).toEqual([3, 1.5]);
    // Cheap images: the cap rises once the budget pays for 1.25 × 1.5 fps, not before.
    await advance(10_000);
    await runJob(s, 'c', 150);
    expect(caps).toEqual([3, 1.5]);
    await advance(10_000);
    await runJob(s, 'd', 100);
    expect(caps).toEqual([3, 1.5]);
    await advance(10_000);
    await runJob(s, 'e', 100);
    // 200, 190, 172, 157.6 ms: 300 ms/s pays for 1.9 fps.
    expect(caps).toEqual([3, 1.5, 1.9]);
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
