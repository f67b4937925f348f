import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { testDir } from './support/dirs';
import { encodedVideo } from './support/encoded-media';
import { jpegFrames, probe } from './support/media';
import { ServiceProcess, stopServices } from './support/service-process';
import { StreamClient } from './support/stream-client';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';
import { waitFor } from './support/wait';

// A test that failed before stopping its service must not leave it (and its Postgres) running.
afterEach(() => stopServices());

describe('recording after kill -9', () => {
  let dir: string;
  let databaseUrl: string;
  let db: Pool;

  beforeAll(async () => {
    dir = testDir('crash');
    databaseUrl = await createTestDatabase();
    db = new Pool({ connectionString: databaseUrl, max: 2 });
  });
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
    RESUME_WINDOW_MS: '4000',
    STREAM_MAX_FPS: '2000',
  });

  it('rebuilds recordings from the spool: the resumed session has every frame, the abandoned one every acked frame', async () => {
    const frames = await jpegFrames(640, 480);
    const token = hsToken({ sub: 'teller' });
    const send = (c: StreamClient, from: number, to: number) => {
      for (let seq = from; seq <= to; seq++) {
        c.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
      }
    };

    const first = new ServiceProcess(env(), dir);
    const url1 = await first.listening();
    const resumed = await StreamClient.connect(url1, { token });
    const s1 = await resumed.open({ video: { width: 640, height: 480, fps: 10 } });
    const abandoned = await StreamClient.connect(url1, { token });
    const s2 = await abandoned.open({ video: { width: 640, height: 480, fps: 10 } });
    send(resumed, 1, 100);
    send(abandoned, 1, 60);
    const acked1 = (await resumed.acksUntil(80)).at(-1) as number;
    const acked2 = (await abandoned.acksUntil(50)).at(-1) as number;
    send(resumed, 101, 120);

    expect((await first.stop('SIGKILL')).code).toBe(null);

    const second = new ServiceProcess(env(), dir);
    const url2 = await second.listening();
    try {
      const again = await StreamClient.connect(url2, { token });
      again.send({ type: 'resume', sessionId: s1.sessionId, resumeToken: s1.resumeToken });
      const opened = await again.next('opened');
      expect(opened.lastSeq).toBeGreaterThanOrEqual(acked1);
      // The client resends everything after its last ack; the server drops what it has.
      send(again, acked1 + 1, 150);
      await again.acksUntil(150);
      again.send({ type: 'close' });
      const closed = await again.next('closed', 90_000);
      expect(closed.recording.status).toBe('ready');
      const r1 = await db.query<{ path: string }>(
        `SELECT path FROM recordings WHERE session_id = $1`,
        [s1.sessionId],
      );
      expect((await probe(r1.rows[0]?.path)).videoFrames).toBe(150);

      // Never resumed: abandoned when its window passes, finalized from the spool.
      await waitFor(
        async () => {
          const r = await db.query<{ status: string }>(
            `SELECT status FROM recordings WHERE session_id = $1`,
            [s2.sessionId],
          );
          return r.rows[0]?.status === 'ready';
        },
        90_000,
        'abandoned session recording ready',
      );
      const r2 = await db.query<{ path: string; frame_count: number }>(
        `SELECT path, frame_count FROM recordings WHERE session_id = $1`,
        [s2.sessionId],
      );
      const p2 = await probe(r2.rows[0]?.path);
      expect(p2.videoFrames).toBeGreaterThanOrEqual(acked2);
      expect(p2.videoFrames).toBe(r2.rows[0]?.frame_count);
      const status = await db.query(`SELECT status FROM sessions WHERE id = $1`, [s2.sessionId]);
      expect(status.rows[0].status).toBe('abandoned');
    } finally {
      expect((await second.stop('SIGTERM')).code).toBe(0);
    }
  }, 300_000);

  it('continues a compressed session after kill -9: resumed from the spool with a key frame asked for, the recording complete and decodable', async () => {
    const h264 = await encodedVideo(dir, 'h264', { width: 640, height: 480, frames: 50, gop: 10 });
    const token = hsToken({ sub: 'teller' });
    const send = (c: StreamClient, from: number, to: number) => {
      for (let seq = from; seq <= to; seq++) {
        const chunk = h264.chunks[seq - 1];
        c.sendChunk(seq, (seq - 1) * 100, chunk.data, chunk.key);
      }
    };

    const first = new ServiceProcess(env(), dir);
    const url1 = await first.listening();
    const client = await StreamClient.connect(url1, { token });
    const s = await client.open({
      video: { width: 640, height: 480, fps: 10, codec: h264.codec, description: h264.description },
    });
    send(client, 1, 25);
    const acked = (await client.acksUntil(20)).at(-1) as number;
    send(client, 26, 32);
    expect((await first.stop('SIGKILL')).code).toBe(null);

    const second = new ServiceProcess(env(), dir);
    const url2 = await second.listening();
    try {
      const again = await StreamClient.connect(url2, { token });
      again.send({ type: 'resume', sessionId: s.sessionId, resumeToken: s.resumeToken });
      const opened = await again.next('opened');
      expect(opened.lastSeq).toBeGreaterThanOrEqual(acked);
      expect(await again.next('keyframe')).toEqual({ type: 'keyframe', reason: 'resume' });
      // The chain of deltas continues from what the spool holds; the next GOP starts a key frame.
      send(again, opened.lastSeq + 1, 50);
      await again.acksUntil(50);
      expect(again.messages.filter((m) => m.type === 'error')).toEqual([]);
      again.send({ type: 'close' });
      const closed = await again.next('closed', 90_000);
      expect(closed.recording.status).toBe('ready');
      const row = await db.query<{ path: string; frame_count: number; video_codec: string }>(
        `SELECT path, frame_count, video_codec FROM recordings WHERE session_id = $1`,
        [s.sessionId],
      );
      expect(row.rows[0]).toMatchObject({ frame_count: 50, video_codec: 'h264' });
      const p = await probe(row.rows[0].path);
      expect(p.videoFrames).toBe(50);
      expect(Math.abs(p.durationMs - 5_000)).toBeLessThanOrEqual(100);
      await waitFor(
        async () =>
          (
            await db.query<{ decode_check: string }>(
              `SELECT decode_check FROM recordings WHERE session_id = $1`,
              [s.sessionId],
            )
          ).rows[0].decode_check === 'passed',
        90_000,
        'decode check passed',
      );
    } finally {
      expect((await second.stop('SIGTERM')).code).toBe(0);
    }
  }, 300_000);
});
