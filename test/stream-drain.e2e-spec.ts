import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { testDir } from './support/dirs';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { ServiceProcess, stopServices } from './support/service-process';
import { spooledFrames } from './support/spool-reader';
import { payloadFor, StreamClient } from './support/stream-client';
import { hsToken, TEST_SECRET } from './support/tokens';

// A test that failed before stopping its service must not leave it (and its Postgres) running.
afterEach(() => stopServices());

describe('drain on SIGTERM', () => {
  let dir: string;
  let databaseUrl: string;

  beforeAll(async () => {
    dir = testDir('drain');
    databaseUrl = await createTestDatabase();
  });
  afterAll(async () => {
    await dropTestDatabase(databaseUrl);
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives the live client its final ack and 1012, exits 0, and keeps every acked frame', async () => {
    const dataDir = join(dir, 'data');
    const service = new ServiceProcess(
      {
        DATA_DIR: dataDir,
        DATABASE_URL: databaseUrl,
        AUTH_JWT_SECRET: TEST_SECRET,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        // A long ack interval: frames sent just before SIGTERM are acked only by the final ack.
        ACK_INTERVAL_MS: '5000',
        ACK_MAX_FRAMES: '1000',
      },
      dir,
    );
    const url = await service.listening();
    const client = await StreamClient.connect(url, { token: hsToken() });
    const opened = await client.open();
    for (let seq = 1; seq <= 80; seq++) {
      client.sendFrame(seq, seq * 100, payloadFor(seq));
    }
    client.send({ type: 'ping', t: 1 });
    await client.next('pong');

    const exit = service.stop('SIGTERM');
    const { code } = await client.closed;
    expect(code).toBe(1012);
    const acks = client.messages
      .filter((m) => m.type === 'ack')
      .map((m) => (m as { seq: number }).seq);
    expect(acks.at(-1)).toBe(80);
    expect((await exit).code).toBe(0);

    const frames = await spooledFrames(dataDir, opened.sessionId);
    expect(frames.map((f) => f.seq)).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
    expect(service.stdout).toMatch(/"msg":"drained"/);
  }, 240_000);
});
