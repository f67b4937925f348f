import { JobQueue } from '../src/queue/job-queue.service';
import { startTestApp, type TestApp } from './support/app';
import { waitFor } from './support/wait';

/** The pg-boss foundation: its schema comes from our migration and jobs run, retry and fail. */
describe('job queue (pg-boss on the service database)', () => {
  let app: TestApp;
  let queue: JobQueue;

  beforeAll(async () => {
    app = await startTestApp();
    queue = app.started.app.get(JobQueue);
  });
  afterAll(() => app.close());

  it('runs on the schema the migration installed, at the version pg-boss checks', async () => {
    const version = await app.db.query<{ version: number }>(`SELECT version FROM pgboss.version`);
    expect(version.rows).toEqual([{ version: 24 }]);
  });

  it('delivers a job to a worker once and records it completed', async () => {
    await queue.boss.createQueue('probe-complete');
    const seen: unknown[] = [];
    queue.work<{ n: number }>('probe-complete', { pollingIntervalSeconds: 0.5 }, (job) => {
      seen.push(job.data);
      return Promise.resolve({ done: true });
    });
    const id = await queue.boss.send('probe-complete', { n: 7 });
    await waitFor(
      async () => (await queue.boss.getJobById('probe-complete', id!))?.state === 'completed',
    );
    expect(seen).toEqual([{ n: 7 }]);
    expect((await queue.boss.getJobById('probe-complete', id!))?.output).toEqual({ done: true });
  });

  it('retries a failing job up to its limit, then records it failed with the error', async () => {
    await queue.boss.createQueue('probe-retry');
    let attempts = 0;
    queue.work('probe-retry', { pollingIntervalSeconds: 0.5 }, () => {
      attempts++;
      return Promise.reject(new Error(`attempt ${attempts} failed`));
    });
    const id = await queue.boss.send('probe-retry', {}, { retryLimit: 2, retryDelay: 1 });
    await waitFor(
      async () => (await queue.boss.getJobById('probe-retry', id!))?.state === 'failed',
      20_000,
      'the job failed after its retries',
    );
    const job = await queue.boss.getJobById('probe-retry', id!);
    expect(attempts).toBe(3);
    expect(job?.retryCount).toBe(2);
    expect(JSON.stringify(job?.output)).toContain('attempt 3 failed');
  });

  it('keeps running when it cannot record an outcome: the job stays active for a retry', async () => {
    await queue.boss.createQueue('probe-lost');
    const realComplete = queue.boss.complete.bind(queue.boss);
    let refused = 0;
    // The database refusing the completion, as when it goes away as a job ends.
    queue.boss.complete = (() => {
      refused++;
      return Promise.reject(new Error('connection terminated'));
    });
    try {
      queue.work('probe-lost', { pollingIntervalSeconds: 0.5 }, () => Promise.resolve());
      const id = await queue.boss.send('probe-lost', {});
      await waitFor(() => Promise.resolve(refused === 1), 10_000, 'the completion was tried');
      expect((await queue.boss.getJobById('probe-lost', id!))?.state).toBe('active');
    } finally {
      queue.boss.complete = realComplete;
      await queue.offWork('probe-lost');
    }
  });
});
