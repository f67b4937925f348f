import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { JobNotifier } from '../src/jobs/job-notifier.service';
import { JobRetention } from '../src/jobs/job-retention.service';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { call, startTestApp, type TestApp } from './support/app';
import { testDir } from './support/dirs';
import { makeVideo, probeFile, streamOf } from './support/job-media';
import { jpegFrames } from './support/media';
import { rawRequest } from './support/raw-http';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { verifyWithDocsCode } from './support/verify-webhook';
import { waitFor } from './support/wait';
import { WebhookReceiver } from './support/webhook-receiver';

const MB = 1024 * 1024;
/** Uploads above this are refused in these tests (the default is 1 GiB). */
const UPLOAD_MAX = 8 * MB;
const JOB_MS = 90_000;

interface JobRecord {
  id: string;
  type: string;
  state: string;
  progress: number;
  attempts: number;
  maxAttempts: number;
  error: string | null;
  spec: Record<string, unknown>;
  outputs: Array<{
    name: string;
    contentType: string;
    primary: boolean;
    bytes: number;
    sha256: string;
    probe: { format: string; durationS: number; streams: Array<Record<string, unknown>> } | null;
    url: string;
  }>;
  events: Array<{ type: string; detail: Record<string, unknown> }>;
  durations: { queuedMs: number | null; runningMs: number | null; totalMs: number | null };
  startedAt: string | null;
  finishedAt: string | null;
  outputsExpired: boolean;
}

/** `total` bytes of zeros, one shared 64 KiB chunk at a time. */
function zeros(total: number): () => Buffer | null {
  const chunk = Buffer.alloc(64 * 1024);
  let left = total;
  return () => {
    if (left <= 0) {
      return null;
    }
    const n = Math.min(left, chunk.length);
    left -= n;
    return n === chunk.length ? chunk : chunk.subarray(0, n);
  };
}

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
      // The process ended while we looked, or is not ours to inspect.
    }
  }
  return pids;
}

describe('media jobs API', () => {
  let app: TestApp;
  let dir: string;
  let receiver: WebhookReceiver;
  const secret = 'whsec-0123456789abcdef0123456789abcdef';
  const alice = hsToken({ sub: 'alice', scope: 'media:process stream:publish' });
  const bob = hsToken({ sub: 'bob', scope: 'media:process stream:publish' });
  const admin = hsToken({ sub: 'root', scope: 'admin media:process' });

  beforeAll(async () => {
    app = await startTestApp({
      env: { MEDIA_UPLOAD_MAX_BYTES: String(UPLOAD_MAX), KEEP_SPOOL: 'true' },
    });
    dir = testDir('media-jobs');
    receiver = await WebhookReceiver.start();
    await makeVideo(dir, 'clip.mp4', { seconds: 3, width: 320, height: 240, fps: 25 });
    await makeVideo(dir, 'long.mp4', { seconds: 120, width: 640, height: 480, fps: 25 });
  });
  afterAll(async () => {
    await app.close();
    await receiver.close();
  });

  async function jobOf(id: string, token = alice): Promise<JobRecord> {
    const res = await call<JobRecord>(app.url, 'GET', `/v1/media/jobs/${id}`, { token });
    expect(res.status).toBe(200);
    return res.body;
  }

  /** Polls the job until it reaches a final state; returns it and every progress value seen. */
  async function settle(id: string): Promise<{ job: JobRecord; progress: number[] }> {
    const progress: number[] = [];
    let job = await jobOf(id);
    await waitFor(
      async () => {
        job = await jobOf(id);
        if (job.state === 'running' || job.state === 'completed') {
          progress.push(job.progress);
        }
        return ['completed', 'failed', 'cancelled'].includes(job.state);
      },
      JOB_MS,
      `job ${id} settled`,
    );
    return { job, progress };
  }

  function form(spec: unknown, files: Record<string, Buffer>): FormData {
    const body = new FormData();
    body.append('spec', JSON.stringify(spec));
    for (const [name, bytes] of Object.entries(files)) {
      body.append(name, new Blob([bytes]), `${name}.bin`);
    }
    return body;
  }

  async function submitForm(
    spec: unknown,
    files: Record<string, Buffer>,
    token = alice,
  ): Promise<{ status: number; body: Record<string, any> }> {
    const res = await fetch(`${app.url}/v1/media/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body: form(spec, files),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  }

  /** Streams a session of `count` JPEG frames at 10 fps and closes it; its id once recorded. */
  async function recordSession(
    token: string,
    count: number,
    params: Record<string, unknown> = {},
  ): Promise<string> {
    const frames = await jpegFrames(320, 240, 10);
    const client = await StreamClient.connect(app.url, { token });
    const opened = await client.open({ params, video: { width: 320, height: 240, fps: 10 } });
    for (let seq = 1; seq <= count; seq++) {
      client.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
    await client.acksUntil(count);
    client.send({ type: 'close' });
    const closed = await client.next('closed', JOB_MS);
    expect(closed.recording?.status).toBe('ready');
    client.close();
    return opened.sessionId;
  }

  describe('refusals', () => {
    it('answers 401 without a token and 403 without media:process', async () => {
      const spec = {
        type: 'extract-audio',
        input: { recording: crypto.randomUUID() },
        format: 'wav',
      };
      const anonymous = await call(app.url, 'POST', '/v1/media/jobs', { body: spec });
      expect(anonymous.status).toBe(401);
      const noScope = await call(app.url, 'POST', '/v1/media/jobs', {
        token: hsToken({ sub: 'alice', scope: 'stream:publish recording:read' }),
        body: spec,
      });
      expect(noScope.status).toBe(403);
      expect(noScope.body).toMatchObject({ error: 'insufficient_scope' });
      const list = await call(app.url, 'GET', '/v1/media/jobs', {
        token: hsToken({ sub: 'alice', scope: 'stream:publish' }),
      });
      expect(list.status).toBe(403);
    });

    it('answers 400 naming every bad field of a spec', async () => {
      const unknownType = await call(app.url, 'POST', '/v1/media/jobs', {
        token: alice,
        body: { type: 'explode', input: { upload: 'a' } },
      });
      expect(unknownType.status).toBe(400);
      expect(unknownType.body).toMatchObject({ error: 'validation_failed' });
      expect(unknownType.body.fields).toEqual([{ field: 'type', problem: expect.any(String) }]);

      const bad = await call(app.url, 'POST', '/v1/media/jobs', {
        token: alice,
        body: {
          type: 'transcode',
          input: { recording: 'not-a-uuid' },
          width: 641,
          crf: 80,
          extra: true,
        },
      });
      expect(bad.status).toBe(400);
      const fields = (bad.body.fields as Array<{ field: string }>).map((f) => f.field).sort();
      expect(fields).toEqual(['crf', 'extra', 'input.recording', 'width']);
      expect(bad.body.message).toMatch(/^job spec is invalid: /);

      const uploadInJson = await call(app.url, 'POST', '/v1/media/jobs', {
        token: alice,
        body: { type: 'extract-audio', input: { upload: 'clip' }, format: 'mp3' },
      });
      expect(uploadInJson.status).toBe(400);
      expect(uploadInJson.body.fields).toEqual([
        { field: 'input.upload', problem: expect.stringContaining('no file part named "clip"') },
      ]);

      const badWebhook = await call(app.url, 'POST', '/v1/media/jobs', {
        token: alice,
        body: {
          type: 'extract-audio',
          input: { recording: crypto.randomUUID() },
          format: 'wav',
          webhook: { url: 'ftp://example.com/hook', secret: 'short' },
        },
      });
      expect(badWebhook.status).toBe(400);
      expect(badWebhook.body.fields).toEqual([
        { field: 'webhook.url', problem: 'must be an https:// URL' },
        { field: 'webhook.secret', problem: expect.stringMatching(/>=32 characters/) },
      ]);

      const malformed = await call(app.url, 'POST', '/v1/media/jobs', {
        token: alice,
        raw: 'not json',
      });
      expect(malformed.status).toBe(400);
      expect(malformed.body.message).toMatch(/malformed JSON/);

      const text = await call(app.url, 'POST', '/v1/media/jobs', {
        token: alice,
        raw: 'hello',
        headers: { 'content-type': 'text/plain' },
      });
      expect(text.status).toBe(415);
    });

    it("answers 404 for someone else's recording or a missing session, 409 for one not ready", async () => {
      const bobs = await recordSession(bob, 5);
      const others = await call(app.url, 'POST', '/v1/media/jobs', {
        token: alice,
        body: { type: 'extract-audio', input: { recording: bobs }, format: 'wav' },
      });
      expect(others.status).toBe(404);
      expect(others.body.message).toBe(`input.recording: session ${bobs} not found`);
      const missing = await call(app.url, 'POST', '/v1/media/jobs', {
        token: alice,
        body: { type: 'extract-audio', input: { recording: crypto.randomUUID() }, format: 'wav' },
      });
      expect(missing.status).toBe(404);
      expect(missing.body.message).toMatch(/^input\.recording: session [0-9a-f-]+ not found$/);

      const client = await StreamClient.connect(app.url, { token: alice });
      const open = await client.open({ video: { width: 320, height: 240, fps: 10 } });
      const frames = await jpegFrames(320, 240, 2);
      client.ws.send(encodeMediaMessage(Track.Video, 1, 0, frames[0]));
      await client.acksUntil(1);
      const live = await call(app.url, 'POST', '/v1/media/jobs', {
        token: alice,
        body: { type: 'transcode', input: { recording: open.sessionId } },
      });
      expect(live.status).toBe(409);
      expect(live.body.message).toMatch(/is not ready \(recording\)/);
      client.send({ type: 'close' });
      await client.next('closed', JOB_MS);
      client.close();

      // Nothing was left behind by the refusals: no row, no folder.
      const rows = await app.db.query('SELECT count(*)::int AS n FROM media_jobs');
      expect(rows.rows[0].n).toBe(0);
      const jobsDir = join(app.dataDir, 'jobs');
      expect(existsSync(jobsDir) ? readdirSync(jobsDir) : []).toEqual([]);
    });

    it('refuses a 10 GB declared upload with 413 before reading its body', async () => {
      const answer = await rawRequest(app.url, {
        method: 'POST',
        path: '/v1/media/jobs',
        headers: {
          authorization: `Bearer ${alice}`,
          'content-type': 'multipart/form-data; boundary=x',
        },
        bodyLength: 10 * 1024 * MB,
        nextChunk: zeros(64 * MB),
      });
      expect(answer.status).toBe(413);
      expect(JSON.parse(answer.body)).toMatchObject({ error: 'payload_too_large' });
      expect(answer.closedByServer).toBe(true);
      // Answered while the client was still sending the first megabytes; the rest never went.
      expect(answer.sentWhenAnswered).toBeLessThan(16 * MB);
      const jobsDir = join(app.dataDir, 'jobs');
      expect(existsSync(jobsDir) ? readdirSync(jobsDir) : []).toEqual([]);
    });

    it('refuses an upload part over the limit (413) and parts the spec does not name (400), keeping nothing', async () => {
      const spec = { type: 'extract-audio', input: { upload: 'clip' }, format: 'wav' };
      const clip = readFileSync(join(dir, 'clip.mp4'));
      const tooBig = await submitForm(spec, { clip: Buffer.alloc(UPLOAD_MAX + 1) });
      expect(tooBig.status).toBe(413);
      // Without a Content-Length (chunked), the limit is met while the body streams in.
      const chunked = new Response(form(spec, { clip: Buffer.alloc(UPLOAD_MAX + 1) }));
      const streamed = await fetch(`${app.url}/v1/media/jobs`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${alice}`,
          'content-type': chunked.headers.get('content-type') as string,
        },
        body: chunked.body,
        duplex: 'half',
      });
      expect(streamed.status).toBe(413);
      expect(((await streamed.json()) as { message: string }).message).toMatch(
        /larger than the limit of 8388608 bytes/,
      );
      const extra = await submitForm(spec, { clip, other: clip });
      expect(extra.status).toBe(400);
      expect(extra.body.fields).toEqual([
        { field: 'other', problem: 'file part not referenced by the spec' },
      ]);
      const badName = await submitForm(spec, { clip, '../x': clip });
      expect(badName.status).toBe(400);
      const noSpec = new FormData();
      noSpec.append('clip', new Blob([clip]), 'clip.mp4');
      const res = await fetch(`${app.url}/v1/media/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${alice}` },
        body: noSpec,
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { message: string }).message).toMatch(/no "spec" field/);
      const jobsDir = join(app.dataDir, 'jobs');
      expect(existsSync(jobsDir) ? readdirSync(jobsDir) : []).toEqual([]);
    });
  });

  it('extracts the audio of an uploaded MP4: progress to 100, ffprobe facts, Range and ETag on the result', async () => {
    const clip = readFileSync(join(dir, 'clip.mp4'));
    const submitted = await submitForm(
      {
        type: 'extract-audio',
        input: { upload: 'clip' },
        format: 'mp3',
        webhook: { url: receiver.url(), secret },
      },
      { clip },
    );
    expect(submitted.status).toBe(202);
    expect(submitted.body).toMatchObject({
      type: 'extract-audio',
      state: 'queued',
      attempts: 0,
      webhook: { url: receiver.url() },
    });
    expect(JSON.stringify(submitted.body)).not.toContain(secret);
    const id = submitted.body.id as string;

    const { job, progress } = await settle(id);
    expect(job).toMatchObject({ state: 'completed', progress: 100, attempts: 1, error: null });
    // Progress never goes back and ends at 100.
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress[progress.length - 1]).toBe(100);
    expect(job.durations.totalMs).toBeGreaterThanOrEqual(job.durations.runningMs ?? -1);
    expect(job.events.map((e) => e.type).filter((t) => !t.startsWith('webhook'))).toEqual([
      'submitted',
      'started',
      'completed',
    ]);
    expect(job.outputs).toHaveLength(1);
    const [output] = job.outputs;
    expect(output).toMatchObject({
      name: expect.stringMatching(/\.mp3$/),
      contentType: 'audio/mpeg',
      primary: true,
    });

    const res = await fetch(`${app.url}/v1/media/jobs/${id}/result`, {
      headers: { authorization: `Bearer ${alice}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBe(`"${output.sha256}"`);
    expect(res.headers.get('content-type')).toBe('audio/mpeg');
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes.length).toBe(output.bytes);
    const file = join(dir, 'result.mp3');
    writeFileSync(file, bytes);
    const probed = await probeFile(file);
    expect(streamOf(probed, 'video')).toBeUndefined();
    const audio = streamOf(probed, 'audio');
    expect(audio?.codec_name).toBe('mp3');
    expect(Number(probed.format.duration)).toBeGreaterThan(2.9);
    expect(Number(probed.format.duration)).toBeLessThan(3.2);

    const range = await fetch(`${app.url}/v1/media/jobs/${id}/result`, {
      headers: { authorization: `Bearer ${alice}`, range: 'bytes=100-199' },
    });
    expect(range.status).toBe(206);
    expect(range.headers.get('content-range')).toBe(`bytes 100-199/${output.bytes}`);
    expect(Buffer.from(await range.arrayBuffer()).equals(bytes.subarray(100, 200))).toBe(true);
    const cached = await fetch(`${app.url}/v1/media/jobs/${id}/result/${output.name}`, {
      headers: { authorization: `Bearer ${alice}`, 'if-none-match': `"${output.sha256}"` },
    });
    expect(cached.status).toBe(304);

    // Its webhook: one signed delivery of the completed record, never the secret.
    const [hook] = await receiver.waitFor(`${id}:completed`, 1);
    const delivered = JSON.parse(hook.rawBody.toString()) as {
      event: string;
      data: Record<string, any>;
    };
    expect(delivered.event).toBe('job.completed');
    expect(delivered.data).toMatchObject({ id, state: 'completed', progress: 100 });
    expect(delivered.data.outputs[0].sha256).toBe(output.sha256);
    expect(hook.rawBody.toString()).not.toContain(secret);
    expect(
      await verifyWithDocsCode([
        { rawBody: hook.rawBody, header: hook.headers['framegate-signature'] as string, secret },
      ]),
    ).toEqual([true]);
    const stored = await app.db.query(
      `SELECT webhook_secret, webhook_enqueued_at FROM media_jobs WHERE id = $1`,
      [id],
    );
    expect((await jobOf(id)).events.filter((e) => e.type === 'webhook_enqueued')).toEqual([
      expect.objectContaining({ detail: { idempotencyId: `${id}:completed` } }),
    ]);
    expect(stored.rows[0]).toMatchObject({
      webhook_secret: null,
      webhook_enqueued_at: expect.any(Date),
    });

    // Someone else's job does not exist for them; an admin sees it.
    expect((await call(app.url, 'GET', `/v1/media/jobs/${id}`, { token: bob })).status).toBe(404);
    expect(
      (
        await fetch(`${app.url}/v1/media/jobs/${id}/result`, {
          headers: { authorization: `Bearer ${bob}` },
        })
      ).status,
    ).toBe(404);
    expect((await call(app.url, 'DELETE', `/v1/media/jobs/${id}`, { token: bob })).status).toBe(
      404,
    );
    expect((await call(app.url, 'GET', `/v1/media/jobs/${id}`, { token: admin })).status).toBe(200);
    // A finished job cannot be cancelled.
    expect((await call(app.url, 'DELETE', `/v1/media/jobs/${id}`, { token: alice })).status).toBe(
      409,
    );

    // One folder for the job: its input and its output, no attempt left over.
    const jobDir = join(app.dataDir, 'jobs', id);
    expect(readdirSync(join(jobDir, 'out'))).toEqual([output.name]);
    expect(existsSync(join(jobDir, 'runs')) ? readdirSync(join(jobDir, 'runs')) : []).toEqual([]);
    const boss = await app.db.query(`SELECT state FROM pgboss.job WHERE id = $1`, [id]);
    expect(boss.rows).toEqual([{ state: 'completed' }]);

    const list = await call<{ items: Array<{ id: string }>; nextCursor: string | null }>(
      app.url,
      'GET',
      '/v1/media/jobs?state=completed&limit=1',
      { token: alice },
    );
    expect(list.status).toBe(200);
    expect(list.body.items.map((j) => j.id)).toEqual([id]);
    expect((await call(app.url, 'GET', '/v1/media/jobs', { token: bob })).body.items).toEqual([]);
  });

  it('fails a job once, with the reason, when its input is not media', async () => {
    const truncated = readFileSync(join(dir, 'clip.mp4')).subarray(0, 2000);
    const submitted = await submitForm(
      {
        type: 'transcode',
        input: { upload: 'clip' },
        webhook: { url: receiver.url('/failed'), secret },
      },
      { clip: truncated },
    );
    expect(submitted.status).toBe(202);
    const { job } = await settle(submitted.body.id as string);
    expect(job.state).toBe('failed');
    expect(job.attempts).toBe(1);
    expect(job.error).toMatch(/input/i);
    const boss = await app.db.query(`SELECT state, retry_count FROM pgboss.job WHERE id = $1`, [
      job.id,
    ]);
    expect(boss.rows).toEqual([{ state: 'failed', retry_count: 0 }]);
    const result = await call(app.url, 'GET', `/v1/media/jobs/${job.id}/result`, { token: alice });
    expect(result.status).toBe(409);
    const [hook] = await receiver.waitFor(`${job.id}:failed`, 1);
    expect(JSON.parse(hook.rawBody.toString())).toMatchObject({
      event: 'job.failed',
      data: { id: job.id, state: 'failed', error: job.error },
    });
  });

  it("makes a video of a session's stored frames, at their capture times", async () => {
    const sessionId = await recordSession(alice, 30);
    const submitted = await call(app.url, 'POST', '/v1/media/jobs', {
      token: alice,
      body: { type: 'images-to-video', images: { sessionFrames: sessionId }, fps: 10 },
    });
    expect(submitted.status).toBe(202);
    const { job } = await settle(submitted.body.id as string);
    expect(job.state).toBe('completed');
    const res = await fetch(`${app.url}${job.outputs[0].url}`, {
      headers: { authorization: `Bearer ${alice}` },
    });
    const file = join(dir, 'frames.mp4');
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    const probed = await probeFile(file);
    const video = streamOf(probed, 'video');
    expect(video).toMatchObject({
      codec_name: 'h264',
      width: 320,
      height: 240,
      pix_fmt: 'yuv420p',
    });
    // 30 frames 100 ms apart at 10 fps: 30 frames, 3 s.
    expect(Number(video?.nb_read_frames)).toBe(30);
    expect(Number(probed.format.duration)).toBeCloseTo(3, 1);
  });

  it("concatenates the recordings of a transaction, in the order they were opened, the caller's only", async () => {
    const first = await recordSession(alice, 20, { transactionId: 'TX-CAT' });
    const second = await recordSession(alice, 30, { transactionId: 'TX-CAT' });
    await recordSession(bob, 10, { transactionId: 'TX-CAT' });
    const submitted = await call(app.url, 'POST', '/v1/media/jobs', {
      token: alice,
      body: { type: 'concat', transactionId: 'TX-CAT' },
    });
    expect(submitted.status).toBe(202);
    expect(submitted.body.spec).toEqual({
      type: 'concat',
      transactionId: 'TX-CAT',
      sessions: [first, second],
    });
    const { job } = await settle(submitted.body.id as string);
    expect(job.state).toBe('completed');
    const res = await fetch(`${app.url}/v1/media/jobs/${job.id}/result`, {
      headers: { authorization: `Bearer ${alice}` },
    });
    const file = join(dir, 'concat.mp4');
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    const probed = await probeFile(file);
    const video = streamOf(probed, 'video');
    // The recordings' size (RECORDING_WIDTH × RECORDING_HEIGHT), 2 s and 3 s one after the other.
    expect(video).toMatchObject({ codec_name: 'h264', width: 640, height: 480 });
    expect(Number(video?.nb_read_frames)).toBe(50);
    expect(Number(probed.format.duration)).toBeCloseTo(5, 0);

    const none = await call(app.url, 'POST', '/v1/media/jobs', {
      token: alice,
      body: { type: 'concat', transactionId: 'TX-NONE' },
    });
    expect(none.status).toBe(404);
  });

  it('cancels a running job: its ffmpeg is gone within 2 s and the state is final', async () => {
    const submitted = await submitForm(
      { type: 'transcode', input: { upload: 'long' }, width: 1280, height: 960, crf: 18 },
      { long: readFileSync(join(dir, 'long.mp4')) },
    );
    expect(submitted.status).toBe(202);
    const id = submitted.body.id as string;
    const jobDir = join(app.dataDir, 'jobs', id);
    let pids: number[] = [];
    await waitFor(
      async () => {
        pids = await ffmpegsIn(jobDir);
        return pids.length > 0 && (await jobOf(id)).progress > 0;
      },
      JOB_MS,
      'the transcode running',
    );
    const asked = Date.now();
    const cancelled = await call<JobRecord>(app.url, 'DELETE', `/v1/media/jobs/${id}`, {
      token: alice,
    });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.state).toBe('cancelled');
    await waitFor(() => pids.every((pid) => !existsSync(`/proc/${pid}`)), 2_000, 'ffmpeg gone');
    expect(Date.now() - asked).toBeLessThan(10_000);
    expect(await ffmpegsIn(jobDir)).toEqual([]);

    const again = await call<JobRecord>(app.url, 'DELETE', `/v1/media/jobs/${id}`, {
      token: alice,
    });
    expect(again.status).toBe(200);
    const job = await jobOf(id);
    expect(job.state).toBe('cancelled');
    expect(job.outputs).toEqual([]);
    expect(job.events.map((e) => e.type)).toEqual(['submitted', 'started', 'cancelled']);
    const boss = await app.db.query(`SELECT state FROM pgboss.job WHERE id = $1`, [id]);
    expect(boss.rows).toEqual([{ state: 'cancelled' }]);
    expect(
      (await call(app.url, 'GET', `/v1/media/jobs/${id}/result`, { token: alice })).status,
    ).toBe(409);
  });

  it("removes finished jobs' folders after MEDIA_JOB_RETENTION_HOURS and keeps their rows; fails jobs pg-boss dropped; removes orphan folders", async () => {
    const submitted = await submitForm(
      { type: 'thumbnails', input: { upload: 'clip' }, atSeconds: [0.5, 1.5] },
      { clip: readFileSync(join(dir, 'clip.mp4')) },
    );
    expect(submitted.status).toBe(202);
    const id = submitted.body.id as string;
    const { job } = await settle(id);
    expect(job.state).toBe('completed');
    expect(job.outputs.map((o) => o.contentType)).toEqual(['image/jpeg', 'image/jpeg']);
    const jobDir = join(app.dataDir, 'jobs', id);
    expect(existsSync(jobDir)).toBe(true);

    // A job that ended 73 h ago (retention: 72 h by default), a queued job pg-boss no longer
    // has, and a folder no job owns, untouched for 3 h.
    await app.db.query(
      `UPDATE media_jobs SET finished_at = now() - interval '73 hours' WHERE id = $1`,
      [id],
    );
    const lost = crypto.randomUUID();
    await app.db.query(
      `INSERT INTO media_jobs (id, subject, channel, type, state, spec, plan, max_attempts, created_at)
       VALUES ($1, 'alice', 'branch-app', 'transcode', 'queued', '{}', '{}', 4,
               now() - interval '73 hours')`,
      [lost],
    );
    const orphan = join(app.dataDir, 'jobs', crypto.randomUUID());
    mkdirSync(join(orphan, 'in'), { recursive: true });
    const threeHoursAgo = new Date(Date.now() - 3 * 3_600_000);
    utimesSync(orphan, threeHoursAgo, threeHoursAgo);

    const swept = await app.started.app.get(JobRetention).sweepNow();
    expect(swept).toEqual({ expired: 1, orphans: 1, lost: 1 });
    expect(existsSync(jobDir)).toBe(false);
    expect(existsSync(orphan)).toBe(false);
    const expired = await jobOf(id);
    expect(expired).toMatchObject({ state: 'completed', outputsExpired: true });
    expect(expired.outputs).toHaveLength(2);
    expect(expired.events.at(-1)?.type).toBe('expired');
    const result = await call(app.url, 'GET', `/v1/media/jobs/${id}/result`, { token: alice });
    expect(result.status).toBe(409);
    expect(result.body.message).toMatch(/removed by retention/);
    const dropped = await jobOf(lost);
    expect(dropped.state).toBe('failed');
    expect(dropped.error).toMatch(/dropped from the queue/);
    // A second sweep finds nothing more.
    expect(await app.started.app.get(JobRetention).sweepNow()).toEqual({
      expired: 0,
      orphans: 0,
      lost: 0,
    });
  });

  it('hands over the webhooks a crash left behind, once, and records a refused one without retrying it', async () => {
    // Finished jobs whose hand-over never happened, as a crash right after their end leaves them.
    const missed = crypto.randomUUID();
    const refused = crypto.randomUUID();
    for (const [id, url] of [
      [missed, receiver.url('/missed')],
      [refused, 'ftp://hooks.example.com/hook'],
    ]) {
      await app.db.query(
        `INSERT INTO media_jobs (id, subject, channel, type, state, spec, plan, max_attempts,
                                 attempts, progress, outputs, webhook_url, webhook_secret,
                                 started_at, finished_at)
         VALUES ($1, 'alice', 'branch-app', 'transcode', 'completed', '{}', '{}', 4, 1, 100, '[]',
                 $2, $3, now(), now())`,
        [id, url, secret],
      );
    }
    const notifier = app.started.app.get(JobNotifier);
    expect(await notifier.catchUp()).toBe(2);
    const [hook] = await receiver.waitFor(`${missed}:completed`, 1);
    expect(JSON.parse(hook.rawBody.toString())).toMatchObject({
      event: 'job.completed',
      data: { id: missed },
    });
    const refusal = (await jobOf(refused)).events.find((e) => e.type === 'webhook_refused');
    expect(refusal?.detail.reason).toMatch(/https/);
    // Nothing is left to hand over, and nothing is sent twice.
    expect(await notifier.catchUp()).toBe(0);
    const secrets = await app.db.query(
      `SELECT count(*)::int AS n FROM media_jobs WHERE id = ANY($1) AND webhook_secret IS NOT NULL`,
      [[missed, refused]],
    );
    expect(secrets.rows[0].n).toBe(0);
    expect(receiver.forId(`${missed}:completed`)).toHaveLength(1);
  });
});
