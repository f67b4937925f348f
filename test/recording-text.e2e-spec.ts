import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import { CUE_MAX_MS } from '../src/media/webvtt';
import { call, startTestApp, type TestApp } from './support/app';
import { Camera, type Sent } from './support/camera';
import { testDir } from './support/dirs';
import { jpegFrames, probe } from './support/media';
import { ServiceProcess, stopServices } from './support/service-process';
import { StreamClient } from './support/stream-client';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';
import { waitFor } from './support/wait';
import { bracket, parseWebVtt, storedMessages, textTrackCues } from './support/webvtt-probe';

/** A cue lasts until the next message, CUE_MAX_MS at most. */
function cueEnd(start: number, next: number | undefined): number {
  return Math.min(start + CUE_MAX_MS, next ?? Infinity);
}

describe('messages timed into the recording', () => {
  let app: TestApp;
  let frames: Buffer[];
  const alice = hsToken({ sub: 'alice', scope: 'stream:publish recording:read' });
  const bob = hsToken({ sub: 'bob', scope: 'stream:publish recording:read' });

  beforeAll(async () => {
    frames = await jpegFrames(320, 240);
    // An ack per frame: the first frame's acknowledgement then bounds its arrival tightly.
    app = await startTestApp({ env: { ACK_MAX_FRAMES: '1' } });
  });
  afterAll(() => app.close());

  const captions = (
    sessionId: string,
    token: string,
    headers: Record<string, string> = {},
    method = 'GET',
  ) =>
    fetch(`${app.url}/v1/sessions/${sessionId}/recording.vtt`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...headers },
    });

  it('puts client and server messages as cues at their arrival, in the MP4 text track and the .vtt sidecar alike', async () => {
    const client = await StreamClient.connect(app.url, { token: alice });
    const opened = await client.open({ video: { width: 320, height: 240, fps: 10 } });
    const sessionId = opened.sessionId;
    const clientMsg = async (id: string, body: unknown): Promise<Sent> => {
      const sentAt = Date.now();
      client.send({ type: 'msg', id, body });
      await client.next('msg.ack');
      return { sentAt, ackedAt: Date.now() };
    };
    const push = async (id: string, body: unknown): Promise<Sent> => {
      const sentAt = Date.now();
      const res = await call(app.url, 'POST', `/v1/sessions/${sessionId}/messages`, {
        token: alice,
        body: { id, body },
      });
      expect(res.body).toEqual({ id, delivered: true });
      return { sentAt, ackedAt: Date.now() };
    };

    await clientMsg('m0', { text: 'before the first frame' });
    const camera = new Camera((m) => client.ws.send(m), frames);
    await camera.runUntil(0);
    await client.acksUntil(1);
    const firstFrame: Sent = { sentAt: camera.startedAt, ackedAt: Date.now() };
    await camera.runUntil(500);
    const m1 = await clientMsg('m1', { text: 'customer signed', step: 4 });
    await camera.runUntil(1_500);
    const m2 = await push('m2', { text: 'pushed by the bank' });
    expect((await client.next('msg')).id).toBe('m2');
    await camera.runUntil(2_500);
    const m3 = await clientMsg('m3', { amount: 120, currency: 'EUR' });
    await camera.runUntil(3_000);
    await client.acksUntil(camera.lastSeq);

    // While the session records, its captions are not ready, like its MP4.
    expect((await captions(sessionId, alice)).status).toBe(409);

    client.send({ type: 'close' });
    const closed = await client.next('closed');
    expect(closed.recording.status).toBe('ready');
    // After close: stored, not part of the recording.
    const late = await call(app.url, 'POST', `/v1/sessions/${sessionId}/messages`, {
      token: alice,
      body: { id: 'm4', body: { text: 'after close' } },
    });
    expect(late.body).toEqual({ id: 'm4', delivered: false, reason: 'not_connected' });

    const stored = await storedMessages(app.db, sessionId);
    expect(stored.get('m0')?.recordingMs).toBe(0);
    expect(stored.get('m4')?.recordingMs).toBeNull();
    for (const [id, sent] of [
      ['m1', m1],
      ['m2', m2],
      ['m3', m3],
    ] as const) {
      const { recordingMs, arrivalMs } = stored.get(id) ?? {};
      const [low, high] = bracket(sent, firstFrame);
      expect([id, recordingMs]).toEqual([id, expect.any(Number)]);
      expect([id, low <= (recordingMs as number) && (recordingMs as number) <= high]).toEqual([
        id,
        true,
      ]);
      // Its arrival (created_at) less the media origin (the first frame's arrival less its pts).
      expect(Math.abs((recordingMs as number) - (arrivalMs as number))).toBeLessThanOrEqual(100);
    }
    const at = (id: string) => stored.get(id)?.recordingMs as number;
    const expected = [
      { startMs: 0, text: '<v client>before the first frame</v>' },
      { startMs: at('m1'), text: '<v client>customer signed</v>' },
      { startMs: at('m2'), text: '<v server>pushed by the bank</v>' },
      { startMs: at('m3'), text: '<v client>{"amount":120,"currency":"EUR"}</v>' },
    ].map((cue, i, all) => ({ ...cue, endMs: cueEnd(cue.startMs, all[i + 1]?.startMs) }));

    const row = await app.db.query<{ path: string; duration_ms: string; frame_count: number }>(
      `SELECT path, duration_ms, frame_count FROM recordings WHERE session_id = $1`,
      [sessionId],
    );
    const { path } = row.rows[0] ?? { path: '' };
    expect(await textTrackCues(path)).toEqual(expected);
    const video = await probe(path);
    expect(video.videoFrames).toBe(camera.lastSeq);
    expect(video.videoFrames).toBe(row.rows[0]?.frame_count);
    // The last cue outlasts the video; the recording's duration is still the video's.
    expect(at('m3') + CUE_MAX_MS).toBeGreaterThan(video.durationMs);
    expect(Number(row.rows[0]?.duration_ms)).toBe(video.durationMs);

    const res = await captions(sessionId, alice);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/vtt; charset=utf-8');
    const body = Buffer.from(await res.arrayBuffer());
    expect(parseWebVtt(body.toString('utf8'))).toEqual(expected);
    const etag = `"${createHash('sha256').update(body).digest('hex')}"`;
    expect(res.headers.get('etag')).toBe(etag);
    expect((await captions(sessionId, alice, { 'if-none-match': etag })).status).toBe(304);
    const ranged = await captions(sessionId, alice, { range: 'bytes=0-5' });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes 0-5/${body.length}`);
    expect(Buffer.from(await ranged.arrayBuffer()).toString()).toBe('WEBVTT');
    const head = await captions(sessionId, alice, {}, 'HEAD');
    expect([head.status, head.headers.get('content-length')]).toEqual([200, String(body.length)]);
    // Same visibility as the MP4: someone else's session does not exist for them.
    expect((await captions(sessionId, bob)).status).toBe(404);
    client.close();
  }, 120_000);
});

describe('messages timed into a recording rebuilt after kill -9', () => {
  let dir: string;
  let databaseUrl: string;
  let db: Pool;
  let frames: Buffer[];
  const alice = hsToken({ sub: 'alice', scope: 'stream:publish recording:read' });

  beforeAll(async () => {
    dir = testDir('text-crash');
    databaseUrl = await createTestDatabase();
    db = new Pool({ connectionString: databaseUrl, max: 2 });
    frames = await jpegFrames(320, 240);
  });
  // A test that failed before stopping its service must not leave it (and its Postgres) running.
  afterEach(() => stopServices());
  afterAll(async () => {
    await db.end();
    await dropTestDatabase(databaseUrl);
    rmSync(dir, { recursive: true, force: true });
  });

  const env = () => ({
    DATA_DIR: join(dir, 'data'),
    DATABASE_URL: databaseUrl,
    AUTH_JWT_SECRET: TEST_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    RESUME_WINDOW_MS: '8000',
    ACK_MAX_FRAMES: '1',
  });

  /** The text track of a session's recording, checked against its stored messages and brackets. */
  async function checkRecording(
    sessionId: string,
    sent: ReadonlyArray<[id: string, text: string, sent: Sent]>,
    firstFrame: Sent,
  ): Promise<void> {
    const stored = await storedMessages(db, sessionId);
    for (const [id, , s] of sent) {
      const { recordingMs, arrivalMs } = stored.get(id) ?? {};
      const [low, high] = bracket(s, firstFrame);
      expect([id, low <= (recordingMs as number) && (recordingMs as number) <= high]).toEqual([
        id,
        true,
      ]);
      expect(Math.abs((recordingMs as number) - (arrivalMs as number))).toBeLessThanOrEqual(100);
    }
    const starts = sent.map(([id]) => stored.get(id)?.recordingMs as number);
    const expected = sent.map(([, text], i) => ({
      startMs: starts[i],
      endMs: cueEnd(starts[i], starts[i + 1]),
      text,
    }));
    const row = await db.query<{ path: string }>(
      `SELECT path FROM recordings WHERE session_id = $1 AND status = 'ready'`,
      [sessionId],
    );
    expect(await textTrackCues(row.rows[0]?.path ?? '')).toEqual(expected);
  }

  it('keeps every message at its time: the same cues before and after the crash, later ones on the same timeline', async () => {
    const first = new ServiceProcess(env(), dir);
    const url1 = await first.listening();
    const push = async (url: string, sessionId: string, id: string, text: string) => {
      const sentAt = Date.now();
      const res = await call(url, 'POST', `/v1/sessions/${sessionId}/messages`, {
        token: alice,
        body: { id, body: { text } },
      });
      expect(res.status).toBe(200);
      return { sentAt, ackedAt: Date.now() };
    };
    const clientMsg = async (c: StreamClient, id: string, text: string): Promise<Sent> => {
      const sentAt = Date.now();
      c.send({ type: 'msg', id, body: { text } });
      await c.next('msg.ack');
      return { sentAt, ackedAt: Date.now() };
    };

    // Resumed after the crash.
    const a = await StreamClient.connect(url1, { token: alice });
    const sa = await a.open({ video: { width: 320, height: 240, fps: 10 } });
    // Never resumed: abandoned when its window passes, recorded from its spool.
    const b = await StreamClient.connect(url1, { token: alice });
    const sb = await b.open({ video: { width: 320, height: 240, fps: 10 } });
    const camA = new Camera((m) => a.ws.send(m), frames);
    const camB = new Camera((m) => b.ws.send(m), frames);
    await Promise.all([camA.runUntil(0), camB.runUntil(0)]);
    await Promise.all([a.acksUntil(1), b.acksUntil(1)]);
    const firstA: Sent = { sentAt: camA.startedAt, ackedAt: Date.now() };
    const firstB: Sent = { sentAt: camB.startedAt, ackedAt: Date.now() };
    await Promise.all([camA.runUntil(400), camB.runUntil(400)]);
    const a1 = await clientMsg(a, 'a1', 'before the crash');
    const b1 = await clientMsg(b, 'b1', 'never resumed');
    await Promise.all([camA.runUntil(800), camB.runUntil(800)]);
    const a2 = await push(url1, sa.sessionId, 'a2', 'pushed before the crash');
    // The media origin is written once, after the first frame's sync.
    await waitFor(async () => {
      const r = await db.query(
        `SELECT count(*)::int AS n FROM sessions WHERE id = ANY($1) AND media_origin_at IS NOT NULL`,
        [[sa.sessionId, sb.sessionId]],
      );
      return r.rows[0].n === 2;
    });
    const before = await storedMessages(db, sa.sessionId);

    expect((await first.stop('SIGKILL')).code).toBe(null);

    const second = new ServiceProcess(env(), dir);
    const url2 = await second.listening();
    try {
      // Interrupted, not resumed yet: no runtime on this node, timed from its row.
      const a3 = await push(url2, sa.sessionId, 'a3', 'pushed while interrupted');
      const again = await StreamClient.connect(url2, { token: alice });
      again.send({ type: 'resume', sessionId: sa.sessionId, resumeToken: sa.resumeToken });
      const opened = await again.next('opened');
      const camA2 = camA.resumeOn((m) => again.ws.send(m), opened.lastSeq);
      // The frames captured while the node was down go out at once, then the camera is live.
      const now = () => Date.now() - camA.startedAt;
      await camA2.runUntil(now() + 500);
      const a4 = await clientMsg(again, 'a4', 'after the resume');
      await camA2.runUntil(now() + 300);
      await again.acksUntil(camA2.lastSeq);
      again.send({ type: 'close' });
      expect((await again.next('closed', 90_000)).recording.status).toBe('ready');

      const after = await storedMessages(db, sa.sessionId);
      for (const id of ['a1', 'a2']) {
        expect([id, after.get(id)?.recordingMs]).toEqual([id, before.get(id)?.recordingMs]);
      }
      await checkRecording(
        sa.sessionId,
        [
          ['a1', '<v client>before the crash</v>', a1],
          ['a2', '<v server>pushed before the crash</v>', a2],
          ['a3', '<v server>pushed while interrupted</v>', a3],
          ['a4', '<v client>after the resume</v>', a4],
        ],
        firstA,
      );
      const vtt = await fetch(`${url2}/v1/sessions/${sa.sessionId}/recording.vtt`, {
        headers: { authorization: `Bearer ${alice}` },
      });
      const row = await db.query<{ path: string }>(
        `SELECT path FROM recordings WHERE session_id = $1`,
        [sa.sessionId],
      );
      expect(parseWebVtt(await vtt.text())).toEqual(await textTrackCues(row.rows[0]?.path ?? ''));

      await waitFor(
        async () => {
          const r = await db.query<{ status: string }>(
            `SELECT status FROM recordings WHERE session_id = $1`,
            [sb.sessionId],
          );
          return r.rows[0]?.status === 'ready';
        },
        90_000,
        'abandoned session recording ready',
      );
      await checkRecording(sb.sessionId, [['b1', '<v client>never resumed</v>', b1]], firstB);
    } finally {
      expect((await second.stop('SIGTERM')).code).toBe(0);
    }
  }, 300_000);
});
