import { execFileSync } from 'node:child_process';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { startTestApp, type TestApp } from './support/app';
import { BUNDLED } from './support/bitstreams';
import { BurstSender } from './support/burst-sender';
import {
  Canary,
  expectAcksTimely,
  expectRecordingComplete,
  longestAckGapMs,
} from './support/canary';
import { jpegFrames, probe } from './support/media';
import { descendantsMatching } from './support/processes';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

jest.setTimeout(240_000);
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
  return descendantsMatching('force_key_frames').length;
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
    const burst = new BurstSender(app.url, {
      token: hsToken({ sub: 'teller', channel: 'branch-app' }),
      open: { video: { width: 640, height: 480, fps: 10 } },
      messages: pts.map((t, i) =>
        encodeMediaMessage(Track.Video, i + 1, t, frames[i % frames.length]),
      ),
      window: WINDOW,
    });
    let tailsStreaming = 0;
    let tailsClosing = 0;
    let closing = false;
    const sampler = setInterval(() => {
      if (closing) {
        tailsClosing = Math.max(tailsClosing, tailEncoders());
      } else {
        tailsStreaming = Math.max(tailsStreaming, tailEncoders());
      }
    }, 20);
    const [sessionId, ingest, closed] = await (async () => {
      try {
        const id = await burst.opened;
        await burst.acked;
        tailsStreaming = Math.max(tailsStreaming, tailEncoders());
        closing = true;
        const phase = canary.mark();
        return [id, phase, await burst.close()] as const;
      } finally {
        clearInterval(sampler);
        await burst.stop();
      }
    })();
    expect(closed.frames).toBe(300);
    expect(closed.recording.status).toBe('ready');

    const after = canary.sent;
    await waitFor(() => canary.sent >= after + 5, 30_000, 'canary after the burst');
    const tail = canary.mark();
    // The node's own pace is taken around the burst, alone before it and alone again after it:
    // load from outside the node (the machine may be busy with other work) then weighs on both,
    // where one baseline from before could miss it.
    const aloneAgain = canary.sent;
    await waitFor(() => canary.sent >= aloneAgain + 30, 30_000, 'canary alone again');
    const aloneAfter = canary.mark();
    const baseline = longestAckGapMs(aloneAfter) > longestAckGapMs(alone) ? aloneAfter : alone;
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
        [sessionId],
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
