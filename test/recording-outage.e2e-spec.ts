import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { RecordingStatus } from '../src/media/recording.service';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { call, startTestApp, type TestApp } from './support/app';
import { testDir } from './support/dirs';
import { jpegFrames } from './support/media';
import { PgProcess } from './support/pg-process';
import { StreamClient } from './support/stream-client';
import { descendantsMatching } from './support/processes';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

/** This process's H.264 encoders (ffmpeg with libx264), from /proc. */
function videoEncoderCount(): number {
  return descendantsMatching('libx264').length;
}

describe('recording while the database is down', () => {
  let dir: string;
  let pg: PgProcess;
  let app: TestApp;
  const token = hsToken({ sub: 'teller', channel: 'branch-app' });
  const admin = hsToken({ sub: 'ops', scope: 'admin' });

  beforeAll(async () => {
    dir = testDir('recording-outage');
    pg = new PgProcess(join(dir, 'postgres'), 0);
    const url = new URL(await pg.start());
    url.pathname = '/framegate';
    app = await startTestApp({
      databaseUrl: url.toString(),
      env: { RECORDING_MAX_ENCODERS: '1', STREAM_MAX_FPS: '2000' },
    });
  });
  afterAll(async () => {
    await app.close();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stops the encoder and frees its slot when a session finishes while the database is down', async () => {
    const frames = await jpegFrames(320, 240);
    const client = await StreamClient.connect(app.url, { token });
    // Upscaled and sent at once: the recorder is still busy with these frames when the session
    // finishes, which is when a frame in progress used to start a new encoder after abort().
    await client.open({
      video: { width: 320, height: 240, fps: 10 },
      recording: { width: 1280, height: 960 },
    });
    for (let seq = 1; seq <= 100; seq++) {
      client.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
    await client.acksUntil(100);
    const encoders = async () =>
      (
        (await call(app.url, 'GET', '/v1/admin/recording', { token: admin }))
          .body as RecordingStatus
      ).encoders;
    expect(await encoders()).toMatchObject({ active: 1 });

    await pg.stop();
    try {
      client.send({ type: 'close' });
      await client.closed;
      let seen = '';
      await waitFor(
        async () => {
          const e = await encoders();
          seen = `encoders ${JSON.stringify(e)}, ffmpeg children ${videoEncoderCount()}`;
          return e.active === 0 && videoEncoderCount() === 0;
        },
        60_000,
        'encoder stopped and its slot free',
      ).catch((err: Error) => {
        throw new Error(`${err.message}: ${seen}`);
      });
    } finally {
      await pg.start();
    }
  });
});
