import { Logger } from '@nestjs/common';
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { locateTool } from '../src/media/ffmpeg-locator';
import { RETENTION_LOCK_KEY, RetentionService } from '../src/media/retention.service';
import { call, startTestApp, type TestApp } from './support/app';
import { testDir } from './support/dirs';
import { hsToken } from './support/tokens';

const run = promisify(execFile);

/** A real 2 s H.264 MP4 from ffmpeg's test source. */
async function makeMp4(dir: string): Promise<string> {
  const out = join(dir, 'testsrc.mp4');
  const ffmpeg = locateTool('ffmpeg', undefined).path;
  await run(ffmpeg, [
    '-hide_banner',
    '-loglevel',
    'error',
    '-f',
    'lavfi',
    '-i',
    'testsrc=size=320x240:rate=10',
    '-t',
    '2',
    '-c:v',
    'libx264',
    '-pix_fmt',
    'yuv420p',
    '-y',
    out,
  ]);
  return out;
}

interface SeededRecording {
  sessionId: string;
  path: string;
}

interface SeedOptions {
  subject?: string;
  node?: string;
  closedDaysAgo?: number | null;
  status?: 'pending' | 'recording' | 'finalizing' | 'ready' | 'failed';
  failureReason?: string;
  /** The MP4 copied to DATA_DIR/recordings/<id>.mp4; none: the row points at a missing file. */
  source?: string;
  readyAt?: Date;
}

/** A session and its recording row, inserted as the recorder would leave them. */
async function seed(app: TestApp, o: SeedOptions = {}): Promise<SeededRecording> {
  const sessionId = randomUUID();
  const dir = join(app.dataDir, 'recordings');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${sessionId}.mp4`);
  const bytes = o.source ? readFileSync(o.source) : null;
  if (o.source) {
    copyFileSync(o.source, path);
  }
  const closedDaysAgo = o.closedDaysAgo === undefined ? 0 : o.closedDaysAgo;
  await app.db.query(
    `INSERT INTO sessions (id, subject, channel, status, video, resume_token_hash, node, closed_at)
     VALUES ($1, $2, 'branch-app', $3, $4, $5, $6,
             CASE WHEN $7::int IS NULL THEN NULL ELSE now() - make_interval(days => $7::int) END)`,
    [
      sessionId,
      o.subject ?? 'alice',
      closedDaysAgo === null ? 'open' : 'closed',
      JSON.stringify({ width: 320, height: 240, fps: 10 }),
      'a'.repeat(64),
      o.node ?? 'test-node',
      closedDaysAgo,
    ],
  );
  const status = o.status ?? 'ready';
  await app.db.query(
    `INSERT INTO recordings (id, session_id, status, failure_reason, path, bytes, sha256, ready_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [
      randomUUID(),
      sessionId,
      status,
      o.failureReason ?? null,
      status === 'failed' && !o.source ? null : path,
      bytes?.length ?? null,
      bytes ? createHash('sha256').update(bytes).digest('hex') : null,
      status === 'ready' ? (o.readyAt ?? new Date()) : null,
    ],
  );
  return { sessionId, path };
}

async function get(
  app: TestApp,
  sessionId: string,
  token: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(`${app.url}/v1/sessions/${sessionId}/recording`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...headers },
  });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

describe('GET /v1/sessions/{id}/recording', () => {
  let app: TestApp;
  let mp4: Buffer;
  let sha256: string;
  let rec: SeededRecording;
  let workDir: string;
  let source: string;
  const readyAt = new Date('2025-11-20T10:11:12.345Z');
  const alice = hsToken({ sub: 'alice', scope: 'recording:read' });
  const bob = hsToken({ sub: 'bob', scope: 'recording:read' });
  const admin = hsToken({ sub: 'ops', channel: 'console', scope: 'admin' });

  beforeAll(async () => {
    workDir = testDir('recordings');
    source = await makeMp4(workDir);
    mp4 = readFileSync(source);
    sha256 = createHash('sha256').update(mp4).digest('hex');
    app = await startTestApp();
    rec = await seed(app, { source, readyAt });
  });
  afterAll(async () => {
    await app.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('serves the whole MP4 byte-exact to its owner, with its validators', async () => {
    expect(mp4.length).toBeGreaterThan(1000);
    const res = await get(app, rec.sessionId, alice);
    expect(res.status).toBe(200);
    expect(res.body.equals(mp4)).toBe(true);
    expect(Object.fromEntries(res.headers)).toMatchObject({
      'content-type': 'video/mp4',
      'content-length': String(mp4.length),
      'accept-ranges': 'bytes',
      etag: `"${sha256}"`,
      'last-modified': 'Thu, 20 Nov 2025 10:11:12 GMT',
      'cache-control': 'private, max-age=0',
      'content-disposition': `inline; filename="${rec.sessionId}.mp4"`,
    });
    expect(res.headers.get('content-range')).toBeNull();
  });

  it('answers HEAD with the same headers and no body', async () => {
    const full = await get(app, rec.sessionId, alice);
    const head = await get(app, rec.sessionId, alice, {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    for (const name of [
      'content-type',
      'content-length',
      'accept-ranges',
      'etag',
      'last-modified',
      'cache-control',
      'content-disposition',
    ]) {
      expect([name, head.headers.get(name)]).toEqual([name, full.headers.get(name)]);
    }
    // Range is defined for GET only: HEAD describes the whole file.
    const ranged = await get(app, rec.sessionId, alice, { range: 'bytes=0-9' }, 'HEAD');
    expect(ranged.status).toBe(200);
    expect(ranged.headers.get('content-length')).toBe(String(mp4.length));
  });

  it('returns byte-exact slices with 206 and Content-Range', async () => {
    const size = mp4.length;
    const mid = Math.floor(size / 2);
    const cases: Array<[string, number, number]> = [
      ['bytes=0-99', 0, 99],
      [`bytes=${mid}-${mid + 499}`, mid, mid + 499],
      ['bytes=-500', size - 500, size - 1],
      [`bytes=${size - 123}-`, size - 123, size - 1],
      ['bytes=0-', 0, size - 1],
      [`bytes=10-${size * 10}`, 10, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const res = await get(app, rec.sessionId, alice, { range });
      expect([range, res.status]).toEqual([range, 206]);
      expect(res.headers.get('content-range')).toBe(`bytes ${start}-${end}/${size}`);
      expect(res.headers.get('content-length')).toBe(String(end - start + 1));
      expect(res.headers.get('content-type')).toBe('video/mp4');
      expect(res.body.equals(mp4.subarray(start, end + 1))).toBe(true);
    }
  });

  it('answers 416 with the size when no byte of the range exists', async () => {
    const res = await call(app.url, 'GET', `/v1/sessions/${rec.sessionId}/recording`, {
      token: alice,
      headers: { range: `bytes=${mp4.length}-` },
    });
    expect(res.status).toBe(416);
    expect(res.headers.get('content-range')).toBe(`bytes */${mp4.length}`);
    expect(res.body).toEqual({ error: 'range_not_satisfiable', message: expect.any(String) });
  });

  it('serves the whole file for several ranges and for a malformed Range', async () => {
    for (const range of ['bytes=0-9,20-29', 'bytes=9-0', 'pages=1-2']) {
      const res = await get(app, rec.sessionId, alice, { range });
      expect([range, res.status]).toEqual([range, 200]);
      expect(res.body.equals(mp4)).toBe(true);
    }
  });

  it('answers 304 to If-None-Match naming the current ETag', async () => {
    for (const inm of [`"${sha256}"`, `W/"${sha256}"`, `"other", "${sha256}"`, '*']) {
      const res = await get(app, rec.sessionId, alice, { 'if-none-match': inm });
      expect([inm, res.status]).toEqual([inm, 304]);
      expect(res.body.length).toBe(0);
      expect(res.headers.get('etag')).toBe(`"${sha256}"`);
    }
    const changed = await get(app, rec.sessionId, alice, { 'if-none-match': '"other"' });
    expect(changed.status).toBe(200);
    expect(changed.body.equals(mp4)).toBe(true);
  });

  it('answers 304 to If-Modified-Since at or after Last-Modified', async () => {
    const res = await get(app, rec.sessionId, alice, {
      'if-modified-since': 'Thu, 20 Nov 2025 10:11:12 GMT',
    });
    expect(res.status).toBe(304);
    const older = await get(app, rec.sessionId, alice, {
      'if-modified-since': 'Thu, 20 Nov 2025 10:11:11 GMT',
    });
    expect(older.status).toBe(200);
  });

  it('honours Range only when If-Range matches the current representation', async () => {
    const matching = await get(app, rec.sessionId, alice, {
      range: 'bytes=0-99',
      'if-range': `"${sha256}"`,
    });
    expect(matching.status).toBe(206);
    expect(matching.body.equals(mp4.subarray(0, 100))).toBe(true);

    for (const ifRange of ['"stale"', `W/"${sha256}"`, 'Wed, 19 Nov 2025 00:00:00 GMT']) {
      const res = await get(app, rec.sessionId, alice, {
        range: 'bytes=0-99',
        'if-range': ifRange,
      });
      expect([ifRange, res.status]).toEqual([ifRange, 200]);
      expect(res.body.equals(mp4)).toBe(true);
    }
  });

  it('is not found for another subject, exactly like a missing session', async () => {
    const stranger = await call(app.url, 'GET', `/v1/sessions/${rec.sessionId}/recording`, {
      token: bob,
    });
    const missing = await call(app.url, 'GET', `/v1/sessions/${randomUUID()}/recording`, {
      token: bob,
    });
    const notUuid = await call(app.url, 'GET', `/v1/sessions/nope/recording`, { token: bob });
    expect(stranger.status).toBe(404);
    expect(stranger.body).toEqual({ error: 'not_found', message: 'session not found' });
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual(stranger.body);
    expect(notUuid.body).toEqual(stranger.body);
    const strangerHead = await get(app, rec.sessionId, bob, {}, 'HEAD');
    expect(strangerHead.status).toBe(404);
  });

  it('lets an admin read any recording', async () => {
    const res = await get(app, rec.sessionId, admin, { range: 'bytes=-100' });
    expect(res.status).toBe(206);
    expect(res.body.equals(mp4.subarray(mp4.length - 100))).toBe(true);
  });

  it('refuses the owner without recording:read', async () => {
    const publisher = hsToken({ sub: 'alice', scope: 'stream:publish' });
    const res = await call(app.url, 'GET', `/v1/sessions/${rec.sessionId}/recording`, {
      token: publisher,
    });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('insufficient_scope');
  });

  it('answers 409 with the status while the recording is not ready', async () => {
    const live = await seed(app, {
      status: 'recording',
      closedDaysAgo: null,
      node: 'other-node',
    });
    const res = await call(app.url, 'GET', `/v1/sessions/${live.sessionId}/recording`, {
      token: alice,
    });
    expect(res.status).toBe(409);
    expect(res.body).toEqual({ error: 'conflict', message: expect.stringContaining('recording') });
  });

  it('answers 409 with the reason when the recording failed', async () => {
    const failed = await seed(app, { status: 'failed', failureReason: 'ffmpeg exited with 1' });
    const res = await call(app.url, 'GET', `/v1/sessions/${failed.sessionId}/recording`, {
      token: alice,
    });
    expect(res.status).toBe(409);
    expect(res.body).toEqual({
      error: 'conflict',
      message: expect.stringContaining('ffmpeg exited with 1'),
    });
  });

  it('is not found with its own message when the session has no recording', async () => {
    const { sessionId } = await seed(app, { source });
    await app.db.query('DELETE FROM recordings WHERE session_id = $1', [sessionId]);
    const res = await call(app.url, 'GET', `/v1/sessions/${sessionId}/recording`, {
      token: alice,
    });
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'not_found', message: 'no recording for this session' });
  });

  it('answers 500 when the file of a ready recording is missing, and keeps serving', async () => {
    const gone = await seed(app, { source });
    rmSync(gone.path);
    const res = await call(app.url, 'GET', `/v1/sessions/${gone.sessionId}/recording`, {
      token: alice,
    });
    expect(res.status).toBe(500);
    expect(res.body.error).toBe('internal_error');
    expect((await get(app, rec.sessionId, alice, { range: 'bytes=0-0' })).status).toBe(206);
  });

  it('survives a client that aborts in the middle of the file, without logging an error', async () => {
    // Far more than the socket buffers hold, so the abort lands while the file is streaming.
    const big = join(workDir, 'big.mp4');
    writeFileSync(big, Buffer.alloc(64 * 1024 * 1024, 7));
    const large = await seed(app, { source: big });
    const errors = jest.spyOn(Logger.prototype, 'error');
    try {
      const controller = new AbortController();
      const res = await fetch(`${app.url}/v1/sessions/${large.sessionId}/recording`, {
        headers: { authorization: `Bearer ${alice}` },
        signal: controller.signal,
      });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      await reader.read();
      controller.abort();
      await expect(reader.read()).rejects.toThrow();
      const after = await get(app, rec.sessionId, alice);
      expect(after.body.equals(mp4)).toBe(true);
      expect(errors).not.toHaveBeenCalled();
    } finally {
      errors.mockRestore();
    }
  });
});

describe('retention', () => {
  let workDir: string;
  let source: string;

  beforeAll(async () => {
    workDir = testDir('retention');
    source = await makeMp4(workDir);
  });
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  async function exists(app: TestApp, sessionId: string): Promise<boolean> {
    const res = await app.db.query('SELECT 1 FROM sessions WHERE id = $1', [sessionId]);
    return res.rowCount === 1;
  }

  function spool(app: TestApp, sessionId: string): string {
    const dir = join(app.dataDir, 'spool');
    mkdirSync(dir, { recursive: true });
    const path = join(dir, `${sessionId}.spool`);
    writeFileSync(path, 'spool');
    return path;
  }

  describe('with RETENTION_DAYS=30', () => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startTestApp({ env: { RETENTION_DAYS: '30' } });
    });
    afterAll(() => app.close());

    it('purges sessions closed before the window with their files, and keeps the rest', async () => {
      const old = await seed(app, { source, closedDaysAgo: 40 });
      const oldSpool = spool(app, old.sessionId);
      await app.db.query(
        `INSERT INTO session_events (id, session_id, at, type) VALUES ($1, $2, now(), 'created')`,
        [randomUUID(), old.sessionId],
      );
      await app.db.query(
        `INSERT INTO session_messages (id, session_id, direction, client_id, body)
         VALUES ($1, $2, 'in', 'c-1', '{}')`,
        [randomUUID(), old.sessionId],
      );
      const oldFailed = await seed(app, {
        status: 'failed',
        failureReason: 'encoder crashed',
        closedDaysAgo: 31,
      });
      const recent = await seed(app, { source, closedDaysAgo: 5 });
      const recentSpool = spool(app, recent.sessionId);
      const stillOpen = await seed(app, { source, closedDaysAgo: null });
      const otherNode = await seed(app, { source, closedDaysAgo: 40, node: 'other-node' });
      const notFinished = await seed(app, { status: 'finalizing', closedDaysAgo: 40 });

      const retention = app.started.app.get(RetentionService);
      await expect(retention.purgeNow()).resolves.toBe(2);

      expect(await exists(app, old.sessionId)).toBe(false);
      expect(existsSync(old.path)).toBe(false);
      expect(existsSync(oldSpool)).toBe(false);
      for (const table of ['recordings', 'session_events', 'session_messages']) {
        const left = await app.db.query(`SELECT 1 FROM ${table} WHERE session_id = $1`, [
          old.sessionId,
        ]);
        expect([table, left.rowCount]).toEqual([table, 0]);
      }
      expect(await exists(app, oldFailed.sessionId)).toBe(false);

      expect(await exists(app, recent.sessionId)).toBe(true);
      expect(existsSync(recent.path)).toBe(true);
      expect(existsSync(recentSpool)).toBe(true);
      expect(await exists(app, stillOpen.sessionId)).toBe(true);
      expect(await exists(app, otherNode.sessionId)).toBe(true);
      expect(existsSync(otherNode.path)).toBe(true);
      expect(await exists(app, notFinished.sessionId)).toBe(true);

      await expect(retention.purgeNow()).resolves.toBe(0);
    });

    it('purges in batches, oldest first, more than one batch in one sweep', async () => {
      const many = await Promise.all(
        Array.from({ length: 130 }, (_, i) => seed(app, { closedDaysAgo: 31 + (i % 7) })),
      );
      const retention = app.started.app.get(RetentionService);
      const [a, b] = await Promise.all([retention.purgeNow(), retention.purgeNow()]);
      expect(a + b).toBe(130);
      for (const { sessionId } of many.slice(0, 5)) {
        expect(await exists(app, sessionId)).toBe(false);
      }
    });

    it('skips the sweep while another process of this node holds the lock', async () => {
      const old = await seed(app, { source, closedDaysAgo: 45 });
      const other = await app.db.connect();
      try {
        await other.query('SELECT pg_advisory_lock($1, hashtext($2))', [
          RETENTION_LOCK_KEY,
          'test-node',
        ]);
        await expect(app.started.app.get(RetentionService).purgeNow()).resolves.toBe(0);
        expect(await exists(app, old.sessionId)).toBe(true);
        await other.query('SELECT pg_advisory_unlock($1, hashtext($2))', [
          RETENTION_LOCK_KEY,
          'test-node',
        ]);
      } finally {
        other.release();
      }
      await expect(app.started.app.get(RetentionService).purgeNow()).resolves.toBe(1);
      expect(await exists(app, old.sessionId)).toBe(false);
    });

    it('keeps a session whose file cannot be deleted, and still purges the others', async () => {
      const stuck = await seed(app, { closedDaysAgo: 50 });
      // unlink fails on a directory (EISDIR), whoever runs the test.
      mkdirSync(stuck.path);
      const old = await seed(app, { source, closedDaysAgo: 40 });
      const retention = app.started.app.get(RetentionService);
      await expect(retention.purgeNow()).resolves.toBe(1);
      expect(await exists(app, stuck.sessionId)).toBe(true);
      expect(await exists(app, old.sessionId)).toBe(false);
      rmSync(stuck.path, { recursive: true });
      await expect(retention.purgeNow()).resolves.toBe(1);
      expect(await exists(app, stuck.sessionId)).toBe(false);
    });
  });

  describe('without RETENTION_DAYS', () => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startTestApp({ env: { RETENTION_DAYS: undefined } });
    });
    afterAll(() => app.close());

    it('keeps everything', async () => {
      const old = await seed(app, { source, closedDaysAgo: 4000 });
      await expect(app.started.app.get(RetentionService).purgeNow()).resolves.toBe(0);
      expect(await exists(app, old.sessionId)).toBe(true);
      expect(existsSync(old.path)).toBe(true);
    });
  });
});
