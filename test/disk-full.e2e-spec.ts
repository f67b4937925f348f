import { execFile, execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Pool } from 'pg';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { CloseCode } from '../src/protocol/close-codes';
import { ErrorCode } from '../src/common/error-code';
import { call } from './support/app';
import { expectCountsAgree } from './support/counts';
import { testDir } from './support/dirs';
import { jpegFrames } from './support/media';
import { ServiceProcess } from './support/service-process';
import { usedBytes } from './support/small-disk';
import { spooledFrames } from './support/spool-reader';
import { StreamClient } from './support/stream-client';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';
import { waitFor } from './support/wait';

const MB = 1024 * 1024;
/** Size of DATA_DIR's file system, tmpfs or emulated. */
const DISK_MB = 24;
/** HEALTH_MIN_FREE_DISK_MB of the service under test. */
const MIN_FREE_MB = 1;
/** Free space left beside the filler when streaming starts: a few hundred frames. */
const HEADROOM_MB = 3;
const PRELOAD = join(__dirname, 'support', 'small-disk-preload.js');

/** DATA_DIR on a file system of DISK_MB that really fills up. */
interface SmallDisk {
  title: string;
  /** Makes DATA_DIR under `root` and gives the service's extra environment. */
  setUp: (root: string) => { dataDir: string; env: Record<string, string> };
  /** Bytes still free under DATA_DIR, as the service's statfs sees them. */
  freeBytes: (dataDir: string) => number;
  tearDown: (dataDir: string) => void;
}

function mountTmpfs(dir: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${DISK_MB}m,mode=0755`, 'tmpfs', dir], {
    stdio: 'ignore',
  });
}

/**
 * Whether this machine lets the tests mount a tmpfs (root, or CAP_SYS_ADMIN). Asked while the
 * suite is collected, so the titles say which variant runs; each suite mounts its own in
 * `beforeAll`, so a run that filters a suite out leaves nothing mounted.
 */
function mountPermitted(): boolean {
  const dir = testDir('disk-full-probe');
  try {
    mountTmpfs(dir);
    execFileSync('umount', [dir]);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const tmpfsDisk: SmallDisk = {
  title: `DATA_DIR on a ${DISK_MB} MB tmpfs`,
  setUp: (root) => {
    const dataDir = join(root, 'data');
    mkdirSync(dataDir);
    mountTmpfs(dataDir);
    return { dataDir, env: {} };
  },
  freeBytes: (dataDir) => {
    const fs = statfsSync(dataDir);
    return fs.bavail * fs.bsize;
  },
  tearDown: (dataDir) => execFileSync('umount', [dataDir]),
};

/**
 * The same size emulated inside the service by a preload (test/support/small-disk.js): its writes
 * under DATA_DIR fail with ENOSPC and its statfs reports the emulated free space.
 */
function emulatedDisk(why: string): SmallDisk {
  return {
    title: `DATA_DIR on an emulated ${DISK_MB} MB file system, ${why}`,
    setUp: (root) => {
      const dataDir = join(root, 'data');
      mkdirSync(dataDir);
      return {
        dataDir,
        env: {
          NODE_OPTIONS: `--require "${PRELOAD}"`,
          FRAMEGATE_TEST_DISK_DIR: dataDir,
          FRAMEGATE_TEST_DISK_BYTES: String(DISK_MB * MB),
        },
      };
    },
    freeBytes: (dataDir) => DISK_MB * MB - usedBytes(dataDir),
    tearDown: () => undefined,
  };
}

/**
 * A real tmpfs where mount is allowed, else the emulated file system. Where both work, both run,
 * so the emulation is exercised wherever the tmpfs is. FRAMEGATE_TEST_DISK=emulated or =tmpfs
 * runs only that one (tmpfs then fails where mount is refused).
 */
function smallDisks(): SmallDisk[] {
  const only = process.env.FRAMEGATE_TEST_DISK;
  if (only === 'emulated') {
    return [emulatedDisk('as FRAMEGATE_TEST_DISK asks')];
  }
  if (only === 'tmpfs') {
    return [tmpfsDisk];
  }
  if (only !== undefined && only !== '') {
    throw new Error(`FRAMEGATE_TEST_DISK must be emulated or tmpfs, not ${only}`);
  }
  return mountPermitted()
    ? [tmpfsDisk, emulatedDisk('beside the tmpfs')]
    : [emulatedDisk('as mount -t tmpfs is not permitted here')];
}

/** What the emulation's own check does inside a process with the preload; prints its findings. */
const EMULATION_PROBE = `
const fs = require('node:fs');
const fsp = require('node:fs/promises');
const dir = process.env.FRAMEGATE_TEST_DISK_DIR;
const free = (s) => s.bavail * s.bsize;
(async () => {
  const out = { freeAtStart: free(await fsp.statfs(dir)) };
  const a = await fsp.open(dir + '/a', 'w');
  const b = await fsp.open(dir + '/b', 'w');
  const [va, wb] = await Promise.all([
    a.writev([Buffer.alloc(20480, 1), Buffer.alloc(20480, 2)], 0),
    b.write(Buffer.alloc(40960, 3), 0, 40960, 0),
  ]);
  out.written = [va.bytesWritten, wb.bytesWritten];
  out.sizes = [fs.statSync(dir + '/a').size, fs.statSync(dir + '/b').size];
  try {
    await a.write(Buffer.alloc(1), 0, 1, va.bytesWritten);
    out.full = 'no error';
  } catch (err) {
    out.full = { message: err.message, code: err.code, errno: err.errno, syscall: err.syscall };
  }
  const s = fs.statfsSync(dir);
  out.whenFull = { free: free(s), size: s.blocks * s.bsize, promised: free(await fsp.statfs(dir)) };
  out.callback = await new Promise((resolve) => fs.statfs(dir, (err, st) => resolve(free(st))));
  fs.unlinkSync(dir + '/others');
  while (free(await fsp.statfs(dir)) === 0) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  out.afterUnlink = free(await fsp.statfs(dir));
  out.outside = free(await fsp.statfs(require('node:os').tmpdir())) > 0;
  await Promise.all([a.close(), b.close()]);
  process.stdout.write(JSON.stringify(out));
})();
`;

describe('the emulated small disk (test/support/small-disk.js)', () => {
  it('writes what fits without overbooking concurrent writes, then fails with ENOSPC, counts files written by other processes, and reports its free space through statfs', async () => {
    const root = testDir('small-disk');
    const others = join(root, 'others');
    writeFileSync(others, Buffer.alloc(16384));
    try {
      const { stdout } = await promisify(execFile)(process.execPath, ['-e', EMULATION_PROBE], {
        env: {
          PATH: process.env.PATH,
          NODE_OPTIONS: `--require "${PRELOAD}"`,
          FRAMEGATE_TEST_DISK_DIR: root,
          FRAMEGATE_TEST_DISK_BYTES: String(65536),
        },
      });
      expect(JSON.parse(stdout)).toEqual({
        freeAtStart: 49152,
        // The first write gets all it asked for, the second what was left: a short count.
        written: [40960, 8192],
        sizes: [40960, 8192],
        full: {
          message: 'ENOSPC: no space left on device, write',
          code: 'ENOSPC',
          errno: -28,
          syscall: 'write',
        },
        whenFull: { free: 0, size: 65536, promised: 0 },
        callback: 0,
        afterUnlink: 16384,
        outside: true,
      });
      expect(usedBytes(root)).toBe(49152);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

for (const disk of smallDisks()) {
  describe(`a full disk (${disk.title})`, () => fullDisk(disk));
}

function fullDisk(disk: SmallDisk): void {
  let root: string;
  let dataDir: string;
  let diskReady = false;
  let databaseUrl: string;
  let db: Pool;
  let service: ServiceProcess;
  let url: string;
  let filler: string;

  beforeAll(async () => {
    root = testDir('disk-full');
    const { dataDir: dir, env } = disk.setUp(root);
    dataDir = dir;
    diskReady = true;
    filler = join(dataDir, 'filler');
    databaseUrl = await createTestDatabase();
    db = new Pool({ connectionString: databaseUrl, max: 2 });
    service = new ServiceProcess(
      {
        DATA_DIR: dataDir,
        DATABASE_URL: databaseUrl,
        AUTH_JWT_SECRET: TEST_SECRET,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        HEALTH_MIN_FREE_DISK_MB: String(MIN_FREE_MB),
        STREAM_MAX_FPS: '2000',
        STREAM_MAX_KBPS: '1000000',
        RESUME_WINDOW_MS: '120000',
        KEEP_SPOOL: 'true',
        ...env,
      },
      root,
    );
    url = await service.listening();
  });
  afterAll(async () => {
    await service?.stop('SIGTERM');
    if (process.env.DISK_FULL_LOG) {
      // One file for every variant that ran, each under its title.
      appendFileSync(
        process.env.DISK_FULL_LOG,
        `== ${disk.title}\n${service?.stdout ?? ''}${service?.stderr ?? ''}`,
      );
    }
    await db?.end();
    if (databaseUrl) {
      await dropTestDatabase(databaseUrl);
    }
    if (diskReady) {
      disk.tearDown(dataDir);
    }
    if (root) {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('stops streaming sessions with flow, a final ack of what the spool holds and 1013, refuses new ones with 503, stays up, and lets them resume once space is back', async () => {
    const frames = await jpegFrames(640, 480);
    const token = hsToken({ sub: 'teller' });
    writeFileSync(filler, Buffer.alloc(disk.freeBytes(dataDir) - (MIN_FREE_MB + HEADROOM_MB) * MB));

    const clients = await Promise.all([0, 1].map(() => StreamClient.connect(url, { token })));
    const opened = await Promise.all(
      clients.map((c) => c.open({ video: { width: 640, height: 480, fps: 10 } })),
    );
    // Every text message in arrival order (StreamClient consumes acks as the test waits on them).
    const seen: string[][] = clients.map((c) => {
      const log: string[] = [];
      c.ws.on('message', (data: Buffer, binary: boolean) => {
        if (!binary) {
          log.push(data.toString());
        }
      });
      return log;
    });
    const sent = [0, 0];
    // Each client streams until the server closes it; it never sees the disk, only the protocol.
    await Promise.all(
      clients.map(async (c, i) => {
        let open = true;
        void c.closed.then(() => (open = false));
        while (open) {
          for (let k = 0; k < 20 && open; k++) {
            sent[i]++;
            c.ws.send(
              encodeMediaMessage(Track.Video, sent[i], sent[i] * 100, frames[sent[i] % 10]),
            );
          }
          await Promise.race([c.acksUntil(sent[i] - 10, 30_000).catch(() => undefined), c.closed]);
        }
      }),
    );

    for (const [i, c] of clients.entries()) {
      const closed = await c.closed;
      expect(closed.code).toBe(CloseCode.TryAgainLater);
      expect(closed.reason).toMatch(/disk is full/);
      const log = seen[i].map((m) => JSON.parse(m) as { type: string; [k: string]: unknown });
      const flowAt = log.findIndex(
        (m) => m.type === 'flow' && m.reason === ErrorCode.InsufficientStorage,
      );
      expect(log[flowAt]).toEqual({
        type: 'flow',
        maxFps: 0,
        reason: ErrorCode.InsufficientStorage,
      });
      // The final ack comes after the flow and is exactly what the spool holds.
      const stored = await spooledFrames(dataDir, opened[i].sessionId);
      const lastAck = log.filter((m) => m.type === 'ack').at(-1);
      expect(log.lastIndexOf(lastAck as (typeof log)[number])).toBeGreaterThan(flowAt);
      expect(lastAck?.seq).toBe(stored.length);
      expect(c.maxAck).toBe(stored.length);
      expect(stored.at(-1)?.seq).toBe(stored.length);
      expect(c.maxAck).toBeLessThan(sent[i]);
    }

    // Still up, and below the minimum: new sessions are refused (HTTP 503, WebSocket 1013).
    expect(service.child.exitCode).toBeNull();
    expect((await call(url, 'GET', '/health/live')).status).toBe(200);
    const refused = await call(url, 'POST', '/v1/sessions', {
      token,
      body: { video: { width: 640, height: 480, fps: 10 } },
    });
    expect(refused.status).toBe(503);
    expect(refused.body.error).toBe(ErrorCode.InsufficientStorage);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    const wsRefused = await StreamClient.connect(url, { token });
    wsRefused.send({ type: 'open', video: { width: 640, height: 480, fps: 10 } });
    expect((await wsRefused.closed).code).toBe(CloseCode.TryAgainLater);
    const rows = await db.query<{ id: string; status: string }>(
      'SELECT id, status FROM sessions WHERE id = ANY($1)',
      [opened.map((o) => o.sessionId)],
    );
    expect(rows.rows.map((r) => r.status)).toEqual(['interrupted', 'interrupted']);

    // Space comes back: each session resumes from what was stored and closes normally.
    rmSync(filler);
    for (const [i, o] of opened.entries()) {
      let again!: StreamClient;
      let resumed!: Awaited<ReturnType<StreamClient['next']>>;
      await waitFor(
        async () => {
          again = await StreamClient.connect(url, { token });
          again.send({ type: 'resume', sessionId: o.sessionId, resumeToken: o.resumeToken });
          resumed = await again.next('opened').catch(() => null as never);
          return resumed !== null;
        },
        15_000,
        `session ${i} resumed`,
      );
      const lastSeq = (resumed as { lastSeq: number }).lastSeq;
      expect(lastSeq).toBe(clients[i].maxAck);
      const total = lastSeq + 20;
      for (let seq = lastSeq + 1; seq <= total; seq++) {
        again.ws.send(encodeMediaMessage(Track.Video, seq, seq * 100, frames[seq % 10]));
      }
      await again.acksUntil(total);
      again.send({ type: 'close' });
      const closed = await again.next('closed', 60_000);
      expect((await again.closed).code).toBe(CloseCode.Normal);
      expect(closed.recording.status).toBe('ready');
      // Spool records = closed.frames = the row's counters = the recording's frame count =
      // ffprobe's = the audited end event.
      const seen = await expectCountsAgree(db, dataDir, o.sessionId, closed.frames);
      expect(seen.spoolRecords).toBe(total);
      expect(seen.recording.probedFrames).toBe(total);
    }
    expect(service.child.exitCode).toBeNull();
    expect(service.stdout).not.toMatch(/unhandled promise rejection|uncaught exception/);
  });
}
