import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { locateTool } from '../src/media/ffmpeg-locator';
import { startTestApp, type TestApp } from './support/app';
import { ensureClientBuilt } from './support/client-build';
import { testDir } from './support/dirs';
import { jpegFrames, probe } from './support/media';
import { spooledFrames } from './support/spool-reader';
import { TcpProxy } from './support/tcp-proxy';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

const ROOT = join(__dirname, '..');
const PUSH = join(ROOT, 'client/dist/client/src/cli/push.js');
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

interface Run {
  child: ChildProcess;
  /** stderr so far (progress lines). */
  stderr(): string;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Runs the built CLI (`framegate-push`) as a user would. */
function push(args: string[]): Run {
  const child = spawn(process.execPath, [PUSH, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  return { child, stderr: () => stderr, done };
}

interface PushResult {
  sessionId: string;
  frames: number;
  recording: { id: string; status: string; durationMs: number };
}

/** The last stdout line, as JSON. */
function result(stdout: string): PushResult {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as PushResult;
}

describe('framegate-push', () => {
  let app: TestApp;
  let jpegDir: string;
  let jpegs: Buffer[];
  const token = hsToken({ sub: 'alice', channel: 'branch-app' });
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    // The CLI runs as it ships: the SDK built to ESM (once for every suite that needs it).
    const build = ensureClientBuilt();
    const [started, images] = await Promise.all([
      // The spool is kept after the recording is ready, to count what was stored.
      startTestApp({ env: { KEEP_SPOOL: 'true' } }),
      jpegFrames(320, 240, 300),
      build,
    ]);
    app = started;
    jpegs = images;
    jpegDir = testDir('push-jpegs');
    jpegs.forEach((jpeg, i) =>
      writeFileSync(join(jpegDir, `frame-${String(i + 1).padStart(4, '0')}.jpg`), jpeg),
    );
    // Not a JPEG: the CLI skips it.
    writeFileSync(join(jpegDir, 'notes.txt'), 'not an image');
  });
  afterEach(() => {
    for (const child of children.splice(0)) {
      child.kill('SIGKILL');
    }
  });
  afterAll(async () => {
    rmSync(jpegDir, { recursive: true, force: true });
    await app.close();
  });

  /** Seqs 1..frames stored once each (with `payloads`, in this order), all in the recording. */
  async function expectRecorded(
    sessionId: string,
    frames: number,
    payloads?: Buffer[],
  ): Promise<void> {
    const spooled = await spooledFrames(app.dataDir, sessionId);
    expect(spooled.map((f) => f.seq)).toEqual(range(1, frames));
    if (payloads) {
      expect(spooled.every((f, i) => f.payload.equals(payloads[i]))).toBe(true);
    }
    const row = await app.db.query<{ path: string }>(
      'SELECT path FROM recordings WHERE session_id = $1',
      [sessionId],
    );
    expect((await probe(row.rows[0].path)).videoFrames).toBe(frames);
  }

  it('sends 300 JPEGs of a folder in name order and prints the ready recording', async () => {
    const run = push(['--url', app.url, '--token', token, '--fps', '30', jpegDir]);
    children.push(run.child);
    const { code, stdout, stderr } = await run.done;
    expect(stderr).toMatch(/framegate-push: sent \d+, acked \d+/);
    expect(code).toBe(0);
    const out = result(stdout);
    expect(out).toMatchObject({ frames: 300, recording: { status: 'ready', durationMs: 10_000 } });
    await expectRecorded(out.sessionId, 300, jpegs);
  });

  it('sends an MJPEG stream piped from ffmpeg', async () => {
    const source = spawn(
      locateTool('ffmpeg', undefined).path,
      [
        '-v',
        'error',
        '-f',
        'lavfi',
        '-i',
        'testsrc=size=320x240:rate=10',
        '-frames:v',
        '75',
        '-f',
        'mjpeg',
        '-',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(source);
    const run = push(['--url', app.url, '--token', token, '--fps', '10', '-']);
    children.push(run.child);
    source.stdout.pipe(run.child.stdin!);
    const { code, stdout } = await run.done;
    expect(code).toBe(0);
    const out = result(stdout);
    expect(out).toMatchObject({ frames: 75, recording: { status: 'ready', durationMs: 7_500 } });
    await expectRecorded(out.sessionId, 75);
  });

  it('delivers every frame exactly once through a proxy that cuts the connection twice', async () => {
    const proxy = await TcpProxy.start(app.url);
    try {
      const run = push(['--url', proxy.url, '--token', token, '--fps', '30', jpegDir]);
      children.push(run.child);
      const acked = () => {
        const all = [...run.stderr().matchAll(/acked (\d+)/g)];
        return all.length > 0 ? Number(all[all.length - 1][1]) : 0;
      };
      for (const ackedAtLeast of [100, 200]) {
        await waitFor(() => acked() >= ackedAtLeast, 60_000, `acked ${ackedAtLeast}`);
        expect(proxy.cut()).toBe(1);
      }
      const { code, stdout, stderr } = await run.done;
      expect(stderr.match(/reconnecting \(attempt 1/g)).toHaveLength(2);
      expect(code).toBe(0);
      const out = result(stdout);
      expect(out.frames).toBe(300);
      await expectRecorded(out.sessionId, 300, jpegs);
    } finally {
      await proxy.close();
    }
  });

  it('continues a run killed with SIGKILL from its --outbox: every frame once, in order', async () => {
    const outbox = join(testDir('push-outbox'), 'outbox');
    try {
      const args = ['--url', app.url, '--token', token, '--fps', '30', '--outbox', outbox, jpegDir];
      const first = push(args);
      children.push(first.child);
      await waitFor(() => /acked [1-9]\d{2}/.test(first.stderr()), 60_000, 'acked 100');
      first.child.kill('SIGKILL');
      expect((await first.done).code).toBeNull();

      const second = push(args);
      children.push(second.child);
      const { code, stdout, stderr } = await second.done;
      expect(stderr).toMatch(/resumed session [0-9a-f-]{36}: \d+ frames taken before/);
      expect(code).toBe(0);
      const out = result(stdout);
      expect(out.frames).toBe(300);
      await expectRecorded(out.sessionId, 300, jpegs);
    } finally {
      rmSync(join(outbox, '..'), { recursive: true, force: true });
    }
  });

  it('exits non-zero with invalid_token on stderr when the token is refused', async () => {
    const bad = hsToken({ secret: 'not-the-server-secret-0123456789abcdef' });
    const run = push(['--url', app.url, '--token', bad, jpegDir]);
    children.push(run.child);
    const { code, stdout, stderr } = await run.done;
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(
      /^framegate-push: error invalid_token: the server refused the credentials/m,
    );
  });

  it('exits 64 with the usage on a wrong command line', async () => {
    const run = push(['--url', app.url, jpegDir]);
    const { code, stderr } = await run.done;
    expect(code).toBe(64);
    expect(stderr).toMatch(/exactly one of --token .* and --ticket[\s\S]*usage: framegate-push/);
  });
});
