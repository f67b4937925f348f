import { createHash, randomBytes } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import sharp from 'sharp';
import { RetentionService } from '../src/media/retention.service';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { call, startTestApp, type TestApp } from './support/app';
import { testDir } from './support/dirs';
import { probe } from './support/media';
import { ServiceProcess, stopServices } from './support/service-process';
import { StreamClient } from './support/stream-client';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';
import { waitFor } from './support/wait';

/** s3rver's one account. */
const S3_KEY = 'S3RVER';
const BUCKET = 'framegate-recordings';
const FRAMES = 30;

interface RecordingRow {
  id: string;
  status: string;
  path: string | null;
  bytes: string | null;
  sha256: string | null;
  frame_count: number | null;
  storage: string;
  object_key: string | null;
  upload_state: string | null;
  upload_attempts: number;
  upload_error: string | null;
}

/** An S3-compatible server on loopback, stopped and started again on the same port and data. */
class S3Server {
  private server: S3rver | null = null;
  port = 0;

  constructor(private readonly directory: string) {}

  async start(): Promise<void> {
    this.server = new S3rver({
      address: '127.0.0.1',
      port: this.port,
      silent: true,
      directory: this.directory,
      configureBuckets: [{ name: BUCKET, configs: [] }],
    });
    this.port = (await this.server.run()).port;
  }

  async stop(): Promise<void> {
    await this.server?.close();
    this.server = null;
  }

  url(prefix: string): string {
    return `http://127.0.0.1:${this.port}/${BUCKET}/${prefix}`;
  }

  /** Whether the object exists, asked through the real client. */
  async has(key: string): Promise<boolean> {
    const client = new S3Client({
      endpoint: `http://127.0.0.1:${this.port}`,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_KEY },
    });
    try {
      await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
      return true;
    } catch (err) {
      if ((err as { name?: string }).name === 'NotFound') {
        return false;
      }
      throw err;
    } finally {
      client.destroy();
    }
  }
}

/**
 * Frames of noise: the lossless recording of 30 of them is larger than one multipart part
 * (8 MiB), so the upload takes the multipart path.
 */
function noiseFrames(count: number): Promise<Buffer[]> {
  return Promise.all(
    Array.from({ length: count }, () =>
      sharp(randomBytes(640 * 480 * 3), { raw: { width: 640, height: 480, channels: 3 } })
        .jpeg({ quality: 95 })
        .toBuffer(),
    ),
  );
}

/** Streams a session of FRAMES frames and closes it; resolves with its id. */
async function record(url: string, token: string, frames: Buffer[]): Promise<string> {
  const client = await StreamClient.connect(url, { token });
  const opened = await client.open({ video: { width: 640, height: 480, fps: 10 } });
  for (let seq = 1; seq <= FRAMES; seq++) {
    client.ws.send(
      encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[(seq - 1) % frames.length]),
    );
  }
  await client.acksUntil(FRAMES);
  client.send({ type: 'close' });
  await client.next('closed');
  await client.closed;
  return opened.sessionId;
}

async function row(db: Pool, sessionId: string): Promise<RecordingRow> {
  const { rows } = await db.query<RecordingRow>(
    `SELECT id, status, path, bytes, sha256, frame_count, storage, object_key, upload_state,
            upload_attempts, upload_error
       FROM recordings WHERE session_id = $1`,
    [sessionId],
  );
  return rows[0];
}

async function waitForRow(
  db: Pool,
  sessionId: string,
  check: (r: RecordingRow) => boolean,
  what: string,
  timeoutMs = 90_000,
): Promise<RecordingRow> {
  let last: RecordingRow | undefined;
  await waitFor(
    async () => {
      last = await row(db, sessionId);
      return last !== undefined && check(last);
    },
    timeoutMs,
    what,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; the row: ${JSON.stringify(last)}`);
  });
  return last as RecordingRow;
}

async function download(
  url: string,
  sessionId: string,
  token: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(`${url}/v1/sessions/${sessionId}/recording`, {
    headers: { authorization: `Bearer ${token}`, ...headers },
  });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('recordings on S3-compatible storage', () => {
  let dir: string;
  let s3: S3Server;
  let app: TestApp;
  let frames: Buffer[];
  const token = hsToken({
    sub: 'teller',
    channel: 'branch-app',
    scope: 'stream:publish recording:read media:process',
  });
  const admin = hsToken({ sub: 'ops', scope: 'admin' });
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

  beforeAll(async () => {
    dir = testDir('recordings-s3');
    s3 = new S3Server(join(dir, 's3'));
    await s3.start();
    // The SDK's default provider chain reads these, as in production.
    process.env.AWS_ACCESS_KEY_ID = S3_KEY;
    process.env.AWS_SECRET_ACCESS_KEY = S3_KEY;
    frames = await noiseFrames(10);
    app = await startTestApp({
      env: {
        RECORDINGS_S3_URL: s3.url('node-a'),
        RECORDINGS_S3_RETRY_DELAY_S: '1',
        RECORDING_CRF: '0',
        STREAM_MAX_FPS: '2000',
        RETENTION_DAYS: '30',
      },
    });
  });
  afterEach(() => stopServices());
  afterAll(async () => {
    await app?.close();
    await s3.stop();
    process.env.AWS_ACCESS_KEY_ID = saved.id;
    process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    rmSync(dir, { recursive: true, force: true });
  });

  it('uploads a finished recording after its decode check, removes the local file, and serves it from storage with ranges', async () => {
    const sessionId = await record(app.url, token, frames);
    const ready = await waitForRow(app.db, sessionId, (r) => r.status === 'ready', 'ready');
    const localPath = ready.path as string;
    const size = Number(ready.bytes);
    expect(size).toBeGreaterThan(8 * 1024 * 1024);

    const moved = await waitForRow(
      app.db,
      sessionId,
      (r) => r.upload_state === 'uploaded',
      'uploaded',
    );
    expect(moved).toMatchObject({
      storage: 's3',
      path: null,
      object_key: `node-a/${sessionId}.mp4`,
      upload_attempts: 1,
      upload_error: null,
      sha256: ready.sha256,
    });
    expect(existsSync(localPath)).toBe(false);

    const whole = await download(app.url, sessionId, token);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-length')).toBe(String(size));
    expect(whole.headers.get('etag')).toBe(`"${ready.sha256}"`);
    expect(sha256(whole.body)).toBe(ready.sha256);
    const copy = join(dir, 'downloaded.mp4');
    writeFileSync(copy, whole.body);
    expect((await probe(copy)).videoFrames).toBe(ready.frame_count);
    expect(ready.frame_count).toBe(FRAMES);

    const start = 8 * 1024 * 1024 - 100;
    const part = await download(app.url, sessionId, token, {
      range: `bytes=${start}-${start + 9_999}`,
    });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes ${start}-${start + 9_999}/${size}`);
    expect(part.body.equals(whole.body.subarray(start, start + 10_000))).toBe(true);

    const tail = await download(app.url, sessionId, token, { range: 'bytes=-1000' });
    expect(tail.status).toBe(206);
    expect(tail.body.equals(whole.body.subarray(size - 1000))).toBe(true);

    const outside = await download(app.url, sessionId, token, { range: `bytes=${size}-` });
    expect(outside.status).toBe(416);
    expect(outside.headers.get('content-range')).toBe(`bytes */${size}`);

    const cached = await download(app.url, sessionId, token, {
      'if-none-match': `"${ready.sha256}"`,
    });
    expect(cached.status).toBe(304);

    const detail = await call(app.url, 'GET', `/v1/admin/sessions/${sessionId}`, {
      token: admin,
    });
    expect(detail.body.recording.storage).toMatchObject({
      location: 's3',
      objectKey: `node-a/${sessionId}.mp4`,
      upload: { state: 'uploaded', attempts: 1, error: null },
    });
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toMatch(/^framegate_recordings_upload_backlog 0$/m);
    expect(metrics).toMatch(/^framegate_recordings_uploaded_total [1-9]\d*$/m);
  });

  it('answers 302 to a presigned URL that serves the same bytes, with RECORDINGS_S3_REDIRECT=presigned', async () => {
    const sessionId = await record(app.url, token, frames);
    const uploaded = await waitForRow(
      app.db,
      sessionId,
      (r) => r.upload_state === 'uploaded',
      'uploaded',
    );
    // A second node on the same database, serving downloads by redirect.
    const redirecting = await startTestApp({
      databaseUrl: app.databaseUrl,
      env: {
        NODE_ID: 'test-node-b',
        RECORDINGS_S3_URL: s3.url('node-a'),
        RECORDINGS_S3_REDIRECT: 'presigned',
      },
    });
    try {
      const res = await fetch(`${redirecting.url}/v1/sessions/${sessionId}/recording`, {
        headers: { authorization: `Bearer ${token}` },
        redirect: 'manual',
      });
      expect(res.status).toBe(302);
      const location = res.headers.get('location') as string;
      expect(location).toContain(`/${BUCKET}/node-a/${sessionId}.mp4?`);
      expect(location).toContain('X-Amz-Expires=60');
      const fromStorage = await fetch(location, { headers: { range: 'bytes=0-65535' } });
      expect(fromStorage.status).toBe(206);
      const body = Buffer.from(await fromStorage.arrayBuffer());
      const direct = await download(app.url, sessionId, token, { range: 'bytes=0-65535' });
      expect(body.equals(direct.body)).toBe(true);
      expect(uploaded.storage).toBe('s3');
    } finally {
      await redirecting.close();
    }
  });

  it('keeps a recording local and downloadable while storage is down, then uploads it once storage is back', async () => {
    await s3.stop();
    let sessionId = '';
    try {
      sessionId = await record(app.url, token, frames);
      const failing = await waitForRow(
        app.db,
        sessionId,
        (r) => r.upload_state === 'pending' && r.upload_attempts >= 2 && r.upload_error !== null,
        'two failed attempts',
      );
      expect(failing).toMatchObject({ storage: 'local', upload_state: 'pending' });
      expect(failing.upload_error).toMatch(/ECONNREFUSED/);
      expect(existsSync(failing.path as string)).toBe(true);
      const local = await download(app.url, sessionId, token);
      expect(local.status).toBe(200);
      expect(sha256(local.body)).toBe(failing.sha256);
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      expect(metrics).toMatch(/^framegate_recording_upload_failures_total [1-9]\d*$/m);
    } finally {
      await s3.start();
    }
    const moved = await waitForRow(
      app.db,
      sessionId,
      (r) => r.upload_state === 'uploaded',
      'uploaded after storage came back',
    );
    expect(moved).toMatchObject({ storage: 's3', path: null, upload_error: null });
    const fromStorage = await download(app.url, sessionId, token);
    expect(fromStorage.status).toBe(200);
    expect(sha256(fromStorage.body)).toBe(moved.sha256);
  });

  it('answers 503 with Retry-After for a recording on storage while storage is down, and serves it again after', async () => {
    const sessionId = await record(app.url, token, frames);
    const moved = await waitForRow(
      app.db,
      sessionId,
      (r) => r.upload_state === 'uploaded',
      'uploaded',
    );
    await s3.stop();
    try {
      const res = await download(app.url, sessionId, token);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('10');
      expect(JSON.parse(res.body.toString())).toEqual({
        error: 'unavailable',
        message: 'the recording storage is unavailable',
      });
      // Ingest does not depend on storage: the node stays ready.
      expect((await fetch(`${app.url}/health/ready`)).status).toBe(200);
    } finally {
      await s3.start();
    }
    const again = await download(app.url, sessionId, token);
    expect(again.status).toBe(200);
    expect(sha256(again.body)).toBe(moved.sha256);
  });

  it('goes on serving after clients abort downloads from storage mid-body', async () => {
    const sessionId = await record(app.url, token, frames);
    const moved = await waitForRow(
      app.db,
      sessionId,
      (r) => r.upload_state === 'uploaded',
      'uploaded',
    );
    for (let i = 0; i < 3; i++) {
      const aborter = new AbortController();
      const res = await fetch(`${app.url}/v1/sessions/${sessionId}/recording`, {
        headers: { authorization: `Bearer ${token}` },
        signal: aborter.signal,
      });
      expect(res.status).toBe(200);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      await reader.read();
      aborter.abort();
      await reader.read().catch(() => undefined);
    }
    const whole = await download(app.url, sessionId, token);
    expect(whole.status).toBe(200);
    expect(sha256(whole.body)).toBe(moved.sha256);
  });

  it('finishes a move cut short after the object was verified: unlinks the file without uploading again', async () => {
    const sessionId = await record(app.url, token, frames);
    const ready = await waitForRow(app.db, sessionId, (r) => r.status === 'ready', 'ready');
    const localPath = ready.path as string;
    const moved = await waitForRow(
      app.db,
      sessionId,
      (r) => r.upload_state === 'uploaded',
      'uploaded',
    );
    // What a crash between marking the row `s3` and unlinking the file leaves behind.
    writeFileSync(localPath, (await download(app.url, sessionId, token)).body);
    await app.db.query(
      `UPDATE recordings SET path = $2, upload_state = 'pending', upload_retry_at = now(),
                             uploaded_at = NULL
        WHERE session_id = $1`,
      [sessionId, localPath],
    );
    const done = await waitForRow(
      app.db,
      sessionId,
      (r) => r.upload_state === 'uploaded',
      'uploaded again',
    );
    expect(done).toMatchObject({
      storage: 's3',
      path: null,
      upload_attempts: moved.upload_attempts,
    });
    expect(existsSync(localPath)).toBe(false);
    expect(sha256((await download(app.url, sessionId, token)).body)).toBe(ready.sha256);
  });

  it('runs a media job on a recording that lives on storage, from the downloaded object', async () => {
    const sessionId = await record(app.url, token, frames);
    await waitForRow(app.db, sessionId, (r) => r.upload_state === 'uploaded', 'uploaded');
    const submitted = await call(app.url, 'POST', '/v1/media/jobs', {
      token,
      body: { type: 'transcode', input: { recording: sessionId }, width: 320, height: 240 },
    });
    expect(submitted.status).toBe(202);
    let job: Record<string, any> = {};
    await waitFor(
      async () => {
        job = (await call(app.url, 'GET', `/v1/media/jobs/${submitted.body.id}`, { token })).body;
        return ['completed', 'failed', 'cancelled'].includes(job.state as string);
      },
      120_000,
      'job settled',
    );
    expect(job).toMatchObject({ state: 'completed' });
    const result = await fetch(`${app.url}/v1/media/jobs/${job.id}/result`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(result.status).toBe(200);
    const out = join(dir, 'transcoded.mp4');
    writeFileSync(out, Buffer.from(await result.arrayBuffer()));
    expect(await probe(out)).toMatchObject({ videoFrames: FRAMES, width: 320, height: 240 });
  });

  it('deletes the object with the session when retention purges it', async () => {
    const sessionId = await record(app.url, token, frames);
    const moved = await waitForRow(
      app.db,
      sessionId,
      (r) => r.upload_state === 'uploaded',
      'uploaded',
    );
    const key = moved.object_key as string;
    expect(await s3.has(key)).toBe(true);
    await app.db.query(`UPDATE sessions SET closed_at = now() - interval '31 days' WHERE id = $1`, [
      sessionId,
    ]);
    await expect(app.started.app.get(RetentionService).purgeNow()).resolves.toBe(1);
    expect(await s3.has(key)).toBe(false);
    expect(await row(app.db, sessionId)).toBeUndefined();
  });

  it('records why an upload with bad credentials fails and keeps the local file', async () => {
    const databaseUrl = await createTestDatabase();
    const db = new Pool({ connectionString: databaseUrl, max: 2 });
    try {
      const service = new ServiceProcess(
        {
          DATA_DIR: join(dir, 'bad-credentials'),
          DATABASE_URL: databaseUrl,
          AUTH_JWT_SECRET: TEST_SECRET,
          PORT: '0',
          HOST: '127.0.0.1',
          LOG_LEVEL: 'info',
          RECORDING_CAPACITY_FPS: '1000000',
          RECORDING_DECODE_CHECK: 'false',
          RECORDINGS_S3_URL: s3.url('node-c'),
          AWS_ACCESS_KEY_ID: 'NOT-A-KEY',
          AWS_SECRET_ACCESS_KEY: 'not-a-secret',
        },
        dir,
      );
      const url = await service.listening();
      const sessionId = await record(url, token, frames);
      const failed = await waitForRow(
        db,
        sessionId,
        (r) => r.upload_state === 'pending' && r.upload_error !== null,
        'a failed attempt',
      );
      expect(failed).toMatchObject({ storage: 'local', upload_state: 'pending' });
      expect(failed.upload_error).toMatch(/^InvalidAccessKeyId \(HTTP 403\)/);
      expect(existsSync(failed.path as string)).toBe(true);
      const local = await download(url, sessionId, token);
      expect(local.status).toBe(200);
      expect(sha256(local.body)).toBe(failed.sha256);
      await service.stop();
      expect(service.stderr).not.toMatch(/unhandled|uncaught/i);
    } finally {
      await db.end();
      await dropTestDatabase(databaseUrl);
    }
  });
});
