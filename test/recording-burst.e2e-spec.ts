import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { startTestApp, type TestApp } from './support/app';
import { BUNDLED } from './support/bitstreams';
import { Canary, expectAcksTimely, expectRecordingComplete } from './support/canary';
import { jpegFrames, probe } from './support/media';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

jest.setTimeout(240_000);
const EVENT_MS = 90_000;
/** Frames the burst client keeps unacknowledged at most (its outbox re-sending after an outage). */
const WINDOW = 100;

/** Capture times (ms) from 0 at an uneven 7–12 fps, as a phone camera delivers them. */
function unevenPts(count: number): number[] {
  const pts: number[] = [];
  let t = 0;
  for (let i = 0; i < count; i++) {
    pts.push(Math.round(t));
    t += 1000 / (7 + ((i * 5) % 6));
  }
  return pts;
}

/** The service's tail encoders (their argument list forces key frames at chunk starts). */
function tailEncoders(): number {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return (
          ppid === process.pid &&
          readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('force_key_frames')
        );
      } catch {
        return false;
      }
    }).length;
}

/** Frames the bundled 2018 ffmpeg decodes from the file (the system's is what `probe` uses). */
function bundledDecodedFrames(path: string): number {
  const out = execFileSync(
    BUNDLED.ffmpeg,
    ['-hide_banner', '-v', 'error', '-xerror', '-i', path, '-map', '0:v', '-f', 'framemd5', '-'],
    { encoding: 'utf8' },
  );
  return out.split('\n').filter((line) => /^\d/.test(line)).length;
}

describe('a burst of 30 s of capture, then close', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp({
      env: { STREAM_MAX_FPS: '2000', STREAM_MAX_KBPS: '1000000' },
    });
  });
  afterAll(() => app.close());

  it('encodes the tail on several encoders at close: every frame once at its capture time, while a canary keeps timely acks', async () => {
    const canary = await Canary.start(app.url);
    await waitFor(() => canary.sent >= 20, 30_000, 'canary warm');
    canary.mark();
    await waitFor(() => canary.sent >= 50, 30_000, 'canary alone');
    const alone = canary.mark();

    const frames = await jpegFrames(640, 480);
    const pts = unevenPts(300);
    const client = await StreamClient.connect(app.url, {
      token: hsToken({ sub: 'teller', channel: 'branch-app' }),
    });
    const opened = await client.open({ video: { width: 640, height: 480, fps: 10 } });
    let tailsStreaming = 0;
    for (const [i, t] of pts.entries()) {
      while (i + 1 - client.maxAck > WINDOW) {
        await client.next('ack', EVENT_MS);
        tailsStreaming = Math.max(tailsStreaming, tailEncoders());
      }
      client.ws.send(encodeMediaMessage(Track.Video, i + 1, t, frames[i % frames.length]));
    }
    await client.acksUntil(pts.length, EVENT_MS);
    tailsStreaming = Math.max(tailsStreaming, tailEncoders());
    const ingest = canary.mark();
    let tailsClosing = 0;
    const sampler = setInterval(() => {
      tailsClosing = Math.max(tailsClosing, tailEncoders());
    }, 20);
    client.send({ type: 'close' });
    const closed = await client.next('closed', EVENT_MS).finally(() => clearInterval(sampler));
    expect(closed.frames).toBe(300);
    expect(closed.recording.status).toBe('ready');

    const after = canary.sent;
    await waitFor(() => canary.sent >= after + 5, 30_000, 'canary after the burst');
    const tail = canary.mark();
    // The node's own pace is taken around the burst, alone before it and alone again after it:
    // load from outside the node (another test file's cluster on the same two cores) weighs on
    // both, where one baseline from before could miss it.
    const aloneAgain = canary.sent;
    await waitFor(() => canary.sent >= aloneAgain + 30, 30_000, 'canary alone again');
    const aloneAfter = canary.mark();
    const baseline = aloneAfter.maxAckGapMs > alone.maxAckGapMs ? aloneAfter : alone;
    // Beside the burst's ingest, and beside its tail being encoded on every core.
    expectAcksTimely(baseline, ingest);
    expectAcksTimely(baseline, tail);
    const { closedFrames } = await canary.stop();
    expect(closedFrames).toBe(canary.sent);
    await expectRecordingComplete(app.db, canary.sessionId, canary.sent);

    // Behind while streaming it kept one encoder; behind by far more than three chunks at
    // `close`, in a finish lane, it split its tail.
    expect(tailsStreaming).toBe(0);
    expect(tailsClosing).toBeGreaterThanOrEqual(2);
    const row = (
      await app.db.query<{ path: string; frame_count: number; duration_ms: string }>(
        'SELECT path, frame_count, duration_ms FROM recordings WHERE session_id = $1',
        [opened.sessionId],
      )
    ).rows[0];
    // Variable frame rate kept: the capture span plus one nominal interval (1 / 10 fps).
    const expectedMs = pts[pts.length - 1] + 100;
    expect(row.frame_count).toBe(300);
    expect(Number(row.duration_ms)).toBe(expectedMs);
    const probed = await probe(row.path);
    expect(probed.videoFrames).toBe(300);
    expect(Math.abs(probed.durationMs - expectedMs)).toBeLessThanOrEqual(1);
    expect(bundledDecodedFrames(row.path)).toBe(300);
  });
});
