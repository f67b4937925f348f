import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Pool } from 'pg';
import { testDir } from './support/dirs';
import { makeVideo, probeFile, streamOf } from './support/job-media';
import { ServiceProcess, stopServices } from './support/service-process';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';
import { waitFor } from './support/wait';
import { WebhookReceiver } from './support/webhook-receiver';

// A test that failed before stopping its service must not leave it running.
afterEach(() => stopServices());

const JOB_MS = 180_000;

/** The pids of ffmpeg processes whose working directory is inside `dir`. */
async function ffmpegsIn(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8');
      const cwd = await readlink(`/proc/${name}/cwd`);
      if (cmdline.split('\0')[0]?.endsWith('ffmpeg') && cwd.startsWith(dir)) {
        pids.push(Number(name));
      }
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

describe('media job across kill -9', () => {
  let dir: string;
  let databaseUrl: string;
  let db: Pool;
  let receiver: WebhookReceiver;
  const token = hsToken({ sub: 'alice', scope: 'media:process' });

  beforeAll(async () => {
    dir = testDir('jobs-restart');
    databaseUrl = await createTestDatabase();
    db = new Pool({ connectionString: databaseUrl, max: 2 });
    receiver = await WebhookReceiver.start();
    await makeVideo(dir, 'source.mp4', { seconds: 20, width: 640, height: 480, fps: 25 });
  });
  afterAll(async () => {
    await receiver.close();
    await db.end();
    await dropTestDatabase(databaseUrl);
    rmSync(dir, { recursive: true, force: true });
  });

  const env = () => ({
    NODE_ENV: 'test',
    NODE_ID: 'jobs-node',
    DATA_DIR: join(dir, 'data'),
    DATABASE_URL: databaseUrl,
    AUTH_JWT_SECRET: TEST_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    RECORDING_CAPACITY_FPS: '1000000',
    MEDIA_JOB_RETRY_DELAY_S: '1',
  });

  async function job(url: string, id: string): Promise<Record<string, any>> {
    const res = await fetch(`${url}/v1/media/jobs/${id}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(200);
    return (await res.json()) as Record<string, any>;
  }

  async function submit(url: string, spec: Record<string, unknown>): Promise<string> {
    const body = new FormData();
    body.append('spec', JSON.stringify(spec));
    body.append('source', new Blob([readFileSync(join(dir, 'source.mp4'))]), 'source.mp4');
    const submitted = await fetch(`${url}/v1/media/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body,
    });
    expect(submitted.status).toBe(202);
    return ((await submitted.json()) as { id: string }).id;
  }

  /** Waits until the job runs on `url` with ffmpeg going and progress reported; ffmpeg's pids. */
  async function running(url: string, id: string): Promise<number[]> {
    const jobDir = join(dir, 'data', 'jobs', id);
    let pids: number[] = [];
    await waitFor(
      async () => {
        pids = await ffmpegsIn(jobDir);
        const j = await job(url, id);
        return j.state === 'running' && j.progress > 0 && pids.length > 0;
      },
      JOB_MS,
      'the job running',
    );
    return pids;
  }

  it('goes back to the queue when the node stops gracefully mid-job, and completes after it starts again', async () => {
    const first = new ServiceProcess(env(), dir);
    const url1 = await first.listening();
    const id = await submit(url1, { type: 'transcode', input: { upload: 'source' } });
    const pids = await running(url1, id);
    expect((await first.stop('SIGTERM')).code).toBe(0);
    expect(pids.filter((pid) => existsSync(`/proc/${pid}`))).toEqual([]);
    const row = await db.query(`SELECT state, error, run_token FROM media_jobs WHERE id = $1`, [
      id,
    ]);
    expect(row.rows).toEqual([
      { state: 'queued', error: 'the node stopped during the job', run_token: null },
    ]);
    const boss = await db.query(`SELECT state FROM pgboss.job WHERE id = $1`, [id]);
    expect(boss.rows).toEqual([{ state: 'retry' }]);

    const second = new ServiceProcess(env(), dir);
    const url2 = await second.listening();
    let done: Record<string, any> = {};
    await waitFor(
      async () => {
        done = await job(url2, id);
        return ['completed', 'failed', 'cancelled'].includes(done.state as string);
      },
      JOB_MS,
      'the job settled',
    );
    expect(done).toMatchObject({ state: 'completed', attempts: 2 });
    expect((done.events as Array<{ type: string }>).map((e) => e.type)).toEqual([
      'submitted',
      'started',
      'retried',
      'started',
      'completed',
    ]);
    expect((await second.stop('SIGTERM')).code).toBe(0);
  });

  it('is taken back after a restart and completes exactly once', async () => {
    const first = new ServiceProcess(env(), dir);
    const url1 = await first.listening();
    const id = await submit(url1, {
      type: 'transcode',
      input: { upload: 'source' },
      width: 1280,
      height: 960,
      webhook: { url: receiver.url(), secret: 'restart-secret-0123456789abcdef0123' },
    });
    const jobDir = join(dir, 'data', 'jobs', id);
    // Mid-job: ffmpeg runs and has reported progress.
    const pids = await running(url1, id);
    expect((await first.stop('SIGKILL')).code).toBe(null);

    const second = new ServiceProcess(env(), dir);
    const url2 = await second.listening();
    // The first attempt's ffmpeg did not outlive the takeover.
    await waitFor(() => pids.every((pid) => !existsSync(`/proc/${pid}`)), 10_000, 'orphans gone');
    let done: Record<string, any> = {};
    await waitFor(
      async () => {
        done = await job(url2, id);
        return ['completed', 'failed', 'cancelled'].includes(done.state as string);
      },
      JOB_MS,
      'the job settled',
    );
    expect(done).toMatchObject({ state: 'completed', attempts: 2, progress: 100 });
    const events = (done.events as Array<{ type: string }>)
      .map((e) => e.type)
      .filter((t) => !t.startsWith('webhook'));
    expect(events).toEqual([
      'submitted',
      'started',
      'reclaimed',
      'retried',
      'started',
      'completed',
    ]);
    const completions = await db.query(
      `SELECT count(*)::int AS n FROM media_job_events WHERE job_id = $1 AND type = 'completed'`,
      [id],
    );
    expect(completions.rows[0].n).toBe(1);

    // Exactly one set of outputs, in place; no attempt's folder left.
    expect(readdirSync(join(jobDir, 'out'))).toEqual(['video.mp4']);
    expect(existsSync(join(jobDir, 'runs')) ? readdirSync(join(jobDir, 'runs')) : []).toEqual([]);
    const boss = await db.query(`SELECT state, retry_count FROM pgboss.job WHERE id = $1`, [id]);
    expect(boss.rows).toEqual([{ state: 'completed', retry_count: 1 }]);

    const res = await fetch(`${url2}/v1/media/jobs/${id}/result`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const file = join(dir, 'result.mp4');
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    const probed = await probeFile(file);
    expect(streamOf(probed, 'video')).toMatchObject({
      codec_name: 'h264',
      width: 1280,
      height: 960,
      nb_read_frames: '500',
    });
    expect(Number(streamOf(probed, 'audio')?.duration)).toBeCloseTo(20, 0);
    expect(second.stdout).toContain('media job taken back after a restart');

    // One webhook delivery for the job's one completion, however it got there.
    await receiver.waitFor(`${id}:completed`, 1);
    const deliveries = await db.query(
      `SELECT count(*)::int AS n FROM webhook_deliveries WHERE idempotency_id = $1`,
      [`${id}:completed`],
    );
    expect(deliveries.rows[0].n).toBe(1);
    expect(receiver.received.map((r) => r.webhookId)).toEqual([`${id}:completed`]);

    expect((await second.stop('SIGTERM')).code).toBe(0);
  });
});
