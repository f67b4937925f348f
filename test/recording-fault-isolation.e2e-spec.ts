import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'pg';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { testDir } from './support/dirs';
import type { Fault } from './support/fault-media';
import { jpegFrames, probe } from './support/media';
import { TS_NODE } from './support/service-process';
import { spooledFrames } from './support/spool-reader';
import { StreamClient } from './support/stream-client';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';
import { waitFor } from './support/wait';

interface ChildMessage {
  url?: string;
  installed?: Fault | null;
  unexpected?: { event: string; message: string };
}

/** test/support/fault-service.ts in its own process, driven over IPC. */
class FaultService {
  readonly child: ChildProcess;
  readonly messages: ChildMessage[] = [];
  output = '';

  constructor(env: Record<string, string>) {
    this.child = spawn(
      process.execPath,
      ['-r', TS_NODE, join(__dirname, 'support', 'fault-service.ts')],
      {
        env: {
          PATH: process.env.PATH,
          TS_NODE_PROJECT: join(__dirname, '..', 'tsconfig.json'),
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      },
    );
    this.child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.on('message', (m: ChildMessage) => this.messages.push(m));
  }

  async next<K extends keyof ChildMessage>(key: K): Promise<NonNullable<ChildMessage[K]>> {
    let found: ChildMessage | undefined;
    await waitFor(
      () => {
        if (this.child.exitCode !== null) {
          throw new Error(`fault service exited ${this.child.exitCode}: ${this.output}`);
        }
        found = this.messages.find((m) => m[key] !== undefined);
        return found !== undefined;
      },
      60_000,
      `fault service message ${key}`,
    );
    this.messages.splice(this.messages.indexOf(found as ChildMessage), 1);
    return (found as ChildMessage)[key] as NonNullable<ChildMessage[K]>;
  }

  async install(fault: Fault | null, sessionId = ''): Promise<void> {
    this.child.send({ fault, sessionId });
    await this.next('installed');
  }

  unexpected(): ChildMessage['unexpected'][] {
    return this.messages.filter((m) => m.unexpected).map((m) => m.unexpected);
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) {
      const exited = new Promise<number | null>((r) => this.child.once('exit', r));
      this.child.send({ stop: true });
      return exited;
    }
    return this.child.exitCode;
  }
}

describe('fault isolation between sessions', () => {
  let dir: string;
  let databaseUrl: string;
  let db: Pool;
  let service: FaultService;
  let url: string;
  const dataDir = () => join(dir, 'data');

  beforeAll(async () => {
    dir = testDir('fault');
    databaseUrl = await createTestDatabase();
    db = new Pool({ connectionString: databaseUrl, max: 2 });
    service = new FaultService(env());
    url = await service.next('url');
  });
  const env = () => ({
    NODE_ENV: 'test',
    DATA_DIR: dataDir(),
    DATABASE_URL: databaseUrl,
    AUTH_JWT_SECRET: TEST_SECRET,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    NODE_ID: 'fault-node',
    STREAM_MAX_FPS: '2000',
    STREAM_MAX_KBPS: '1000000',
  });
  afterEach(() => service.install(null));
  afterAll(async () => {
    if (process.env.FAULT_LOG) {
      writeFileSync(process.env.FAULT_LOG, service.output);
    }
    expect(await service.stop()).toBe(0);
    await db.end();
    await dropTestDatabase(databaseUrl);
    rmSync(dir, { recursive: true, force: true });
  });

  it("one session's encoder and muxer fail: its recording is failed with the reason and its spool kept, the other records every frame, nothing is unhandled", async () => {
    const frames = await jpegFrames(640, 480);
    const token = hsToken({ sub: 'teller' });
    const video = { video: { width: 640, height: 480, fps: 10 } };
    const faulty = await StreamClient.connect(url, { token });
    const healthy = await StreamClient.connect(url, { token });
    const f = await faulty.open(video);
    const h = await healthy.open(video);
    await service.install('encoder_and_muxer', f.sessionId);

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
        const r = await db.query<{ status: string }>(
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

    // Nothing went unhandled in the service, and it is still up.
    expect(service.unexpected()).toEqual([]);
    expect(service.child.exitCode).toBeNull();
    expect(hc.frames).toBe(total);
    expect(hc.recording.status).toBe('ready');
    const healthyRow = await db.query<{ path: string; frame_count: number }>(
      'SELECT path, frame_count FROM recordings WHERE session_id = $1',
      [h.sessionId],
    );
    expect((await probe(healthyRow.rows[0].path)).videoFrames).toBe(total);
    expect(healthyRow.rows[0].frame_count).toBe(total);

    expect(fc.frames).toBe(total);
    expect(fc.recording.status).toBe('failed');
    // The first failure is the recording's reason: the muxer failed before the encoder did.
    expect(fc.recording.reason).toBe('injected muxer failure');
    const faultyRow = await db.query<{ status: string; failure_reason: string }>(
      'SELECT status, failure_reason FROM recordings WHERE session_id = $1',
      [f.sessionId],
    );
    expect(faultyRow.rows[0]).toEqual({ status: 'failed', failure_reason: fc.recording.reason });
    // Kept so the recording can be rebuilt: every frame of the session is in it.
    expect(existsSync(join(dataDir(), 'spool', `${f.sessionId}.spool`))).toBe(true);
    expect((await spooledFrames(dataDir(), f.sessionId)).length).toBe(total);

    // The node goes on: a new session records normally, and no slot is left held.
    const after = await StreamClient.connect(url, { token });
    await after.open(video);
    for (let seq = 1; seq <= 10; seq++) {
      after.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
    await after.acksUntil(10);
    after.send({ type: 'close' });
    expect((await after.next('closed', 30_000)).recording.status).toBe('ready');
    const admin = hsToken({ sub: 'ops', scope: 'admin' });
    const status = await fetch(`${url}/v1/admin/recording`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(((await status.json()) as { encoders: { active: number } }).encoders.active).toBe(0);
    expect(service.unexpected()).toEqual([]);
    expect(service.child.exitCode).toBeNull();
  });

  it('a recorder that hit ENOSPC marks its recording failed at once, and close rebuilds it from the spool', async () => {
    const frames = await jpegFrames(640, 480);
    const token = hsToken({ sub: 'teller' });
    const client = await StreamClient.connect(url, { token });
    const opened = await client.open({ video: { width: 640, height: 480, fps: 10 } });
    await service.install('disk_full_once', opened.sessionId);
    const total = 60;
    for (let seq = 1; seq <= total; seq++) {
      client.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
    await client.acksUntil(total);
    await waitFor(
      async () => {
        const r = await db.query<{ status: string; failure_reason: string | null }>(
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
    const row = await db.query<{ path: string; frame_count: number; failure_reason: null }>(
      'SELECT path, frame_count, failure_reason FROM recordings WHERE session_id = $1',
      [opened.sessionId],
    );
    expect(row.rows[0].failure_reason).toBeNull();
    expect(row.rows[0].frame_count).toBe(total);
    expect((await probe(row.rows[0].path)).videoFrames).toBe(total);
    expect(service.unexpected()).toEqual([]);
    expect(service.child.exitCode).toBeNull();
  });

  it('a recording that failed for lack of space at close is rebuilt from its kept spool at the next start', async () => {
    const frames = await jpegFrames(640, 480);
    const token = hsToken({ sub: 'teller' });
    const client = await StreamClient.connect(url, { token });
    const opened = await client.open({ video: { width: 640, height: 480, fps: 10 } });
    await service.install('disk_full', opened.sessionId);
    const total = 40;
    for (let seq = 1; seq <= total; seq++) {
      client.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
    await client.acksUntil(total);
    client.send({ type: 'close' });
    const closed = await client.next('closed', 30_000);
    expect(closed.recording.status).toBe('failed');
    expect(closed.recording.reason).toMatch(/ENOSPC/);
    expect((await spooledFrames(dataDir(), opened.sessionId)).length).toBe(total);

    // Space is back after a restart: the recording is rebuilt from the spool.
    expect(await service.stop()).toBe(0);
    service = new FaultService(env());
    url = await service.next('url');
    await waitFor(
      async () => {
        const r = await db.query<{ status: string }>(
          'SELECT status FROM recordings WHERE session_id = $1',
          [opened.sessionId],
        );
        return r.rows[0]?.status === 'ready';
      },
      30_000,
      'the failed recording rebuilt at start',
    );
    const row = await db.query<{ path: string; frame_count: number; failure_reason: null }>(
      'SELECT path, frame_count, failure_reason FROM recordings WHERE session_id = $1',
      [opened.sessionId],
    );
    expect(row.rows[0].failure_reason).toBeNull();
    expect(row.rows[0].frame_count).toBe(total);
    expect((await probe(row.rows[0].path)).videoFrames).toBe(total);
    expect(service.unexpected()).toEqual([]);
  });
});
