import { rmSync } from 'node:fs';
import { ErrorCode } from '../src/common/error-code';
import { PTS_MAX_BACKWARD_MS } from '../src/protocol/media-header';
import { testDir } from './support/dirs';
import { jpegFrames } from './support/media';
import { ServiceProcess } from './support/service-process';
import { spooledFrames } from './support/spool-reader';
import { StreamClient } from './support/stream-client';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';

describe('the pts rule across a restart', () => {
  let databaseUrl: string;
  let dataDir: string;
  const token = hsToken({ sub: 'alice', channel: 'branch-app' });

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
    dataDir = testDir('pts-restart');
  });
  afterAll(async () => {
    await dropTestDatabase(databaseUrl);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('judges the first frame after a resume on a restarted node against the highest pts in the spool', async () => {
    const images = await jpegFrames(320, 240, 2);
    const env = {
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      AUTH_JWT_SECRET: TEST_SECRET,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
    };
    const first = new ServiceProcess(env, dataDir);
    const client = await StreamClient.connect(await first.listening(), { token });
    const opened = await client.open({ video: { width: 320, height: 240, fps: 10 } });
    for (let seq = 1; seq <= 30; seq++) {
      client.sendFrame(seq, 20_000 + seq * 100, images[seq % 2]);
    }
    await client.acksUntil(30);
    // The node dies; the session is rehydrated from its spool on the next start.
    await first.stop('SIGKILL');

    const second = new ServiceProcess(env, dataDir);
    const url = await second.listening();
    try {
      const again = await StreamClient.connect(url, { token });
      again.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: opened.resumeToken });
      expect((await again.next('opened')).lastSeq).toBe(30);

      // 23 s behind the highest stored pts (23 000): a clock that ran back, refused.
      again.sendFrame(31, 23_000 - PTS_MAX_BACKWARD_MS - 1, images[0]);
      expect(await again.next('error')).toMatchObject({
        code: ErrorCode.ValidationFailed,
        seq: 31,
      });
      again.sendFrame(31, 23_100, images[0]);
      expect((await again.acksUntil(31)).at(-1)).toBe(31);
      const frames = await spooledFrames(dataDir, opened.sessionId);
      expect(frames.at(-1)).toMatchObject({ seq: 31, pts: 23_100 });
      again.ws.close();
    } finally {
      expect((await second.stop('SIGTERM')).code).toBe(0);
    }
  });
});
