import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { RecordingService } from '../src/media/recording.service';
import {
  FFMPEG_RECORDER_MEDIA,
  type Mp4Sink,
  type RecorderMedia,
  type VideoEncoder,
} from '../src/media/recorder-media';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { startTestApp, type TestApp } from './support/app';
import { jpegFrames, probe } from './support/media';
import { spooledFrames } from './support/spool-reader';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

const FAIL_AFTER = 8;

/**
 * The fault-injecting double: the real ffmpeg and MP4 writer for every session but one, whose
 * muxer rejects every packet after the first FAIL_AFTER and whose encoder's ffmpeg is killed
 * after as many frames (so its restarts die too).
 */
function failingFor(sessionId: string): RecorderMedia {
  const real = FFMPEG_RECORDER_MEDIA;
  const targets = (path: string) => path.includes(sessionId);
  return {
    async createWriter(path, options): Promise<Mp4Sink> {
      const writer = await real.createWriter(path, options);
      if (!targets(path)) {
        return writer;
      }
      let packets = 0;
      return {
        addVideo: (...args) =>
          ++packets > FAIL_AFTER
            ? Promise.reject(new Error('injected muxer failure'))
            : writer.addVideo(...args),
        addAudio: (...args) => writer.addAudio(...args),
        finalize: () => writer.finalize(),
        cancel: () => writer.cancel(),
      };
    },
    createVideoEncoder(ffmpegPath, outputPath): VideoEncoder {
      const encoder = real.createVideoEncoder(ffmpegPath, outputPath);
      if (!targets(outputPath)) {
        return encoder;
      }
      let frames = 0;
      const write = encoder.write.bind(encoder);
      return Object.assign(encoder, {
        write: (data: Buffer) => {
          if (++frames > FAIL_AFTER) {
            encoder.kill();
          }
          return write(data);
        },
      });
    },
    createAudioEncoder: (ffmpegPath, outputPath) => real.createAudioEncoder(ffmpegPath, outputPath),
  };
}

/**
 * The first MP4 of one session hits ENOSPC after FAIL_AFTER packets, as on a disk that filled up
 * and then got space back; every later writer (the rebuild) is the real one.
 */
function diskFullOnceFor(sessionId: string): RecorderMedia {
  const real = FFMPEG_RECORDER_MEDIA;
  let failed = false;
  return {
    async createWriter(path, options): Promise<Mp4Sink> {
      const writer = await real.createWriter(path, options);
      if (!path.includes(sessionId) || failed) {
        return writer;
      }
      failed = true;
      let packets = 0;
      return {
        addVideo: (...args) =>
          ++packets > FAIL_AFTER
            ? Promise.reject(
                Object.assign(new Error('ENOSPC: no space left on device, write'), {
                  code: 'ENOSPC',
                }),
              )
            : writer.addVideo(...args),
        addAudio: (...args) => writer.addAudio(...args),
        finalize: () => writer.finalize(),
        cancel: () => writer.cancel(),
      };
    },
    createVideoEncoder: (ffmpegPath, outputPath) => real.createVideoEncoder(ffmpegPath, outputPath),
    createAudioEncoder: (ffmpegPath, outputPath) => real.createAudioEncoder(ffmpegPath, outputPath),
  };
}

describe('fault isolation between sessions', () => {
  let app: TestApp;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    app = await startTestApp({
      env: { STREAM_MAX_FPS: '2000', STREAM_MAX_KBPS: '1000000', KEEP_SPOOL: 'false' },
    });
  });
  afterEach(() => {
    app.started.app.get(RecordingService).media = FFMPEG_RECORDER_MEDIA;
  });
  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    await app.close();
  });

  it("one session's encoder and muxer fail: its recording is failed with the reason and its spool kept, the other records every frame, nothing is unhandled", async () => {
    const frames = await jpegFrames(640, 480);
    const token = hsToken({ sub: 'teller' });
    const video = { video: { width: 640, height: 480, fps: 10 } };
    const faulty = await StreamClient.connect(app.url, { token });
    const healthy = await StreamClient.connect(app.url, { token });
    const f = await faulty.open(video);
    const h = await healthy.open(video);
    app.started.app.get(RecordingService).media = failingFor(f.sessionId);

    const total = 120;
    for (let seq = 1; seq <= total; seq++) {
      faulty.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
      healthy.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
      if (seq % 40 === 0) {
        await Promise.all([faulty.acksUntil(seq - 20), healthy.acksUntil(seq - 20)]);
      }
    }
    // The failed recorder does not stop its session: every frame is stored and acknowledged.
    await Promise.all([faulty.acksUntil(total), healthy.acksUntil(total)]);
    await waitFor(
      async () => {
        const r = await app.db.query<{ status: string }>(
          'SELECT status FROM recordings WHERE session_id = $1',
          [f.sessionId],
        );
        return r.rows[0]?.status === 'failed';
      },
      30_000,
      'the faulty recording marked failed while its session streams',
    );

    faulty.send({ type: 'close' });
    healthy.send({ type: 'close' });
    const [fc, hc] = await Promise.all([
      faulty.next('closed', 30_000),
      healthy.next('closed', 30_000),
    ]);

    expect(hc.frames).toBe(total);
    expect(hc.recording.status).toBe('ready');
    const healthyRow = await app.db.query<{ path: string; frame_count: number }>(
      'SELECT path, frame_count FROM recordings WHERE session_id = $1',
      [h.sessionId],
    );
    expect((await probe(healthyRow.rows[0].path)).videoFrames).toBe(total);
    expect(healthyRow.rows[0].frame_count).toBe(total);

    expect(fc.frames).toBe(total);
    expect(fc.recording.status).toBe('failed');
    expect(fc.recording.reason).toMatch(/injected muxer failure|video encoder/);
    const faultyRow = await app.db.query<{ status: string; failure_reason: string }>(
      'SELECT status, failure_reason FROM recordings WHERE session_id = $1',
      [f.sessionId],
    );
    expect(faultyRow.rows[0]).toEqual({ status: 'failed', failure_reason: fc.recording.reason });
    // Kept so the recording can be rebuilt: every frame of the session is in it.
    expect(existsSync(join(app.dataDir, 'spool', `${f.sessionId}.spool`))).toBe(true);
    expect((await spooledFrames(app.dataDir, f.sessionId)).length).toBe(total);

    // The node goes on: a new session records normally, and no slot is left held.
    const after = await StreamClient.connect(app.url, { token });
    await after.open(video);
    for (let seq = 1; seq <= 10; seq++) {
      after.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
    await after.acksUntil(10);
    after.send({ type: 'close' });
    expect((await after.next('closed', 30_000)).recording.status).toBe('ready');
    expect(app.started.app.get(RecordingService).status().encoders.active).toBe(0);
    expect(unhandled).toEqual([]);
  });

  it('a recorder that hit ENOSPC marks its recording failed at once, and close rebuilds it from the spool', async () => {
    const frames = await jpegFrames(640, 480);
    const token = hsToken({ sub: 'teller' });
    const client = await StreamClient.connect(app.url, { token });
    const opened = await client.open({ video: { width: 640, height: 480, fps: 10 } });
    const recordings = app.started.app.get(RecordingService);
    recordings.media = diskFullOnceFor(opened.sessionId);
    const total = 60;
    for (let seq = 1; seq <= total; seq++) {
      client.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
    await client.acksUntil(total);
    await waitFor(
      async () => {
        const r = await app.db.query<{ status: string; failure_reason: string | null }>(
          'SELECT status, failure_reason FROM recordings WHERE session_id = $1',
          [opened.sessionId],
        );
        return r.rows[0]?.status === 'failed' && /ENOSPC/.test(r.rows[0].failure_reason ?? '');
      },
      30_000,
      'the recording marked failed with ENOSPC while the session streams',
    );
    client.send({ type: 'close' });
    const closed = await client.next('closed', 30_000);
    expect(closed.frames).toBe(total);
    expect(closed.recording.status).toBe('ready');
    const row = await app.db.query<{ path: string; frame_count: number; failure_reason: null }>(
      'SELECT path, frame_count, failure_reason FROM recordings WHERE session_id = $1',
      [opened.sessionId],
    );
    expect(row.rows[0].failure_reason).toBeNull();
    expect(row.rows[0].frame_count).toBe(total);
    expect((await probe(row.rows[0].path)).videoFrames).toBe(total);
    expect(unhandled).toEqual([]);
  });
});
