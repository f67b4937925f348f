import fc from 'fast-check';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import { Track } from '../src/protocol/media-header';
import { expectCountsAgree } from './support/counts';
import { testDir } from './support/dirs';
import { jpegFrames, pcmSine } from './support/media';
import { ServiceProcess } from './support/service-process';
import { StreamClient } from './support/stream-client';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';

const AUDIO = { sampleRate: 16_000, channels: 1 } as const;
/** 100 ms of mono 16-bit PCM at 16 kHz. */
const AUDIO_CHUNK_BYTES = 3_200;

/** One media message of a test session: what it carries and when it was captured. */
interface Planned {
  track: Track;
  pts: number;
  payload: Buffer;
}

describe('counts after kill -9 (they come from the spool)', () => {
  let dir: string;
  let dataDir: string;
  let databaseUrl: string;
  let db: Pool;
  let frames: Buffer[];
  let pcm: Buffer;
  let service: ServiceProcess | undefined;
  const token = hsToken({ sub: 'teller' });

  beforeAll(async () => {
    dir = testDir('crash-counts');
    dataDir = join(dir, 'data');
    databaseUrl = await createTestDatabase();
    db = new Pool({ connectionString: databaseUrl, max: 2 });
    frames = await jpegFrames(320, 240);
    pcm = pcmSine(1, AUDIO.sampleRate);
  });
  afterAll(async () => {
    await service?.stop('SIGTERM');
    await db.end();
    await dropTestDatabase(databaseUrl);
    rmSync(dir, { recursive: true, force: true });
  });

  const env = (extra: Record<string, string> = {}) => ({
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    AUTH_JWT_SECRET: TEST_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    KEEP_SPOOL: 'true',
    STREAM_MAX_FPS: '2000',
    ...extra,
  });

  /** The running service, started when there is none. */
  async function running(extra?: Record<string, string>): Promise<string> {
    if (!service || service.child.exitCode !== null || service.child.signalCode !== null) {
      service = new ServiceProcess(env(extra), dir);
    }
    return service.listening();
  }

  async function stopService(): Promise<void> {
    if (service) {
      expect((await service.stop('SIGTERM')).code).toBe(0);
      service = undefined;
    }
  }

  async function kill9(): Promise<void> {
    const exit = await (service as ServiceProcess).stop('SIGKILL');
    expect(exit.code).toBe(null);
    service = undefined;
  }

  /** Video frames, every fifth message audio when `withAudio`, one undecodable image at `badAt`. */
  function plan(count: number, withAudio: boolean, badAt: number | null): Planned[] {
    const out: Planned[] = [];
    let audioAt = 0;
    for (let seq = 1; seq <= count; seq++) {
      const pts = (seq - 1) * 100;
      if (withAudio && seq % 5 === 0) {
        const offset = (audioAt * AUDIO_CHUNK_BYTES) % (pcm.length - AUDIO_CHUNK_BYTES);
        out.push({
          track: Track.Audio,
          pts,
          payload: pcm.subarray(offset, offset + AUDIO_CHUNK_BYTES),
        });
        audioAt++;
      } else if (seq === badAt) {
        out.push({ track: Track.Video, pts, payload: Buffer.from('not an image at all') });
      } else {
        out.push({ track: Track.Video, pts, payload: frames[seq % frames.length] });
      }
    }
    return out;
  }

  function send(client: StreamClient, planned: Planned[], from: number, to: number): void {
    for (let seq = from; seq <= to; seq++) {
      const m = planned[seq - 1];
      client.sendFrame(seq, m.pts, m.payload, m.track);
    }
  }

  it('an empty resume after kill -9 reports every stored frame, not the row of the last flush', async () => {
    const url = await running();
    const first = await StreamClient.connect(url, { token });
    const s = await first.open({ video: { width: 320, height: 240, fps: 10 } });
    const planned = plan(200, false, null);
    send(first, planned, 1, 200);
    await first.acksUntil(100, 30_000);
    await kill9();

    const url2 = await running();
    const again = await StreamClient.connect(url2, { token });
    again.send({ type: 'resume', sessionId: s.sessionId, resumeToken: s.resumeToken });
    const opened = await again.next('opened');
    expect(opened.lastSeq).toBeGreaterThanOrEqual(100);

    // Before close, the live view already counts what the spool holds.
    const view = (await (
      await fetch(`${url2}/v1/sessions/${s.sessionId}`, {
        headers: { authorization: `Bearer ${token}` },
      })
    ).json()) as { lastSeq: number; videoFrames: number };
    expect(view).toMatchObject({ lastSeq: opened.lastSeq, videoFrames: opened.lastSeq });

    again.send({ type: 'close' });
    const closed = await again.next('closed', 60_000);
    expect(closed.frames).toBe(opened.lastSeq);
    const seen = await expectCountsAgree(db, dataDir, s.sessionId, closed.frames);
    expect(seen.recording.probedFrames).toBe(opened.lastSeq);
  }, 180_000);

  it('kill -9 at a random point: after resume and resend, closed, the row, the recording and the audit agree with the spool', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc
          .record({
            count: fc.integer({ min: 20, max: 120 }),
            killAt: fc.double({ min: 0, max: 1, noNaN: true }),
            waitForAck: fc.boolean(),
            withAudio: fc.boolean(),
            badAt: fc.option(fc.integer({ min: 1, max: 20 }), { nil: null }),
          })
          .map((p) => ({ ...p, killAfter: Math.max(1, Math.round(p.killAt * p.count)) })),
        async ({ count, killAfter, waitForAck, withAudio, badAt }) => {
          const url = await running();
          const client = await StreamClient.connect(url, { token });
          const s = await client.open({
            video: { width: 320, height: 240, fps: 10 },
            ...(withAudio ? { audio: AUDIO } : {}),
          });
          const planned = plan(count, withAudio, badAt);
          send(client, planned, 1, killAfter);
          if (waitForAck) {
            await client.acksUntil(killAfter, 30_000);
          }
          await kill9();

          const url2 = await running();
          const again = await StreamClient.connect(url2, { token });
          again.send({ type: 'resume', sessionId: s.sessionId, resumeToken: s.resumeToken });
          const opened = await again.next('opened');
          expect(opened.lastSeq).toBeLessThanOrEqual(killAfter);
          if (waitForAck) {
            expect(opened.lastSeq).toBe(killAfter);
          }
          if (opened.lastSeq < count) {
            send(again, planned, opened.lastSeq + 1, count);
            await again.acksUntil(count, 30_000);
          }
          again.send({ type: 'close' });
          const closed = await again.next('closed', 60_000);
          expect(closed.frames).toBe(count);
          const seen = await expectCountsAgree(db, dataDir, s.sessionId, closed.frames);
          expect(seen.row.rejected).toBe(badAt !== null && !(withAudio && badAt % 5 === 0) ? 1 : 0);
          expect(seen.recording.status).toBe('ready');
        },
      ),
      { numRuns: 5, endOnFailure: true },
    );
  }, 900_000);

  it('a session never resumed after kill -9 is abandoned with the counts of its spool', async () => {
    await stopService();
    const short = { RESUME_WINDOW_MS: '3000' };
    const url = await running(short);
    const client = await StreamClient.connect(url, { token });
    const s = await client.open({ video: { width: 320, height: 240, fps: 10 }, audio: AUDIO });
    const planned = plan(60, true, 3);
    send(client, planned, 1, 60);
    await client.acksUntil(60, 30_000);
    await kill9();

    await running(short);
    const seen = await expectCountsAgree(db, dataDir, s.sessionId);
    expect(seen.spoolRecords).toBe(60);
    expect(seen.row).toMatchObject({ lastSeq: 60, video: 47, audio: 12, rejected: 1 });
    expect(seen.recording.probedFrames).toBe(47);
    const status = await db.query<{ status: string }>(`SELECT status FROM sessions WHERE id = $1`, [
      s.sessionId,
    ]);
    expect(status.rows[0].status).toBe('abandoned');
    await stopService();
  }, 180_000);
});
