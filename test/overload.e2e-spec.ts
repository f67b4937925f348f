import { call, startTestApp, type TestApp } from './support/app';
import {
  Canary,
  type CanaryPhase,
  expectAcksTimely,
  expectRecordingComplete,
  expectResourcesBack,
  resources,
} from './support/canary';
import { jpegFrames } from './support/media';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

/**
 * Issue 10, items 7 and 8: admission by recording capacity. The node's capacity is configured
 * here (40 frames/s) so the arithmetic is exact; measuring it is covered by capacity.spec.ts and
 * bench:ingest. A canary streams at 10 fps beside three 30 fps sessions: the node caps them to
 * the fair share with `flow` (reason `capacity`), refuses a fourth (1013 / 503), closes the one
 * that ignores its cap with 4029 after the grace period with every frame it sent recorded, and
 * lifts the caps when sessions end.
 */
describe('overload: admission by recording capacity', () => {
  let app: TestApp;
  const admin = hsToken({ sub: 'ops', scope: 'admin' });
  const token = hsToken({ sub: 'camera', channel: 'branch-app' });
  const GRACE_MS = 1_500;

  beforeAll(async () => {
    app = await startTestApp({
      env: {
        ACK_INTERVAL_MS: '500',
        RECORDING_CAPACITY_FPS: '40',
        RECORDING_CAPACITY_HEADROOM: '0',
        RECORDING_MIN_FPS: '10',
        STREAM_FLOW_GRACE_MS: String(GRACE_MS),
        RESUME_WINDOW_MS: '2000',
      },
    });
  });
  afterAll(() => app.close());

  const stats = async () =>
    (await call(app.url, 'GET', '/v1/admin/stats', { token: admin })).body as {
      sessions: { live: number };
      capacity: Record<string, unknown>;
    };

  /**
   * A 30 fps camera: paced to the `maxFps` the node last gave it (`opened.limits`, then `flow`)
   * when it obeys, at 30 fps regardless when it does not.
   */
  class Camera {
    maxFps = 30;
    seq = 0;
    readonly flows: Array<{ maxFps: number; reason: string }> = [];
    private timer: NodeJS.Timeout | undefined;
    private lastSentAt = 0;
    sessionId = '';

    private constructor(
      readonly client: StreamClient,
      private readonly frames: Buffer[],
      private readonly obeys: boolean,
    ) {
      client.ws.on('message', (data: Buffer, isBinary: boolean) => {
        const text = isBinary ? '' : data.toString();
        if (text.startsWith('{"type":"flow"')) {
          const flow = JSON.parse(text) as { maxFps: number; reason: string };
          this.flows.push(flow);
          this.maxFps = flow.maxFps;
        }
      });
    }

    static async open(obeys: boolean, frames: Buffer[]): Promise<Camera> {
      const client = await StreamClient.connect(app.url, { token });
      const camera = new Camera(client, frames, obeys);
      const opened = await client.open({ video: { width: 320, height: 240, fps: 30 } });
      camera.sessionId = opened.sessionId;
      camera.maxFps = opened.limits.maxFps;
      return camera;
    }

    start(): void {
      const t0 = performance.now();
      this.timer = setInterval(() => {
        const now = performance.now();
        // 5 % under the cap: timer jitter must not look like a client ignoring it.
        const every = this.obeys ? 1000 / (this.maxFps * 0.95) : 0;
        if (this.client.ws.readyState !== this.client.ws.OPEN || now - this.lastSentAt < every) {
          return;
        }
        this.lastSentAt = now;
        const seq = ++this.seq;
        this.client.sendFrame(seq, Math.round(now - t0), this.frames[seq % this.frames.length]);
      }, 1000 / 30);
    }

    stop(): void {
      clearInterval(this.timer);
    }
  }

  it('caps sessions to the fair share, refuses beyond the minimum, closes one that ignores its cap, and records every frame', async () => {
    const frames = await jpegFrames(320, 240, 10);
    const canary = await Canary.start(app.url);
    await new Promise((r) => setTimeout(r, 2_000));
    canary.mark();
    await new Promise((r) => setTimeout(r, 3_000));
    const alone: CanaryPhase = canary.mark();
    const baseline = resources();

    expect((await stats()).capacity).toMatchObject({
      source: 'configured',
      capacityFps: 40,
      budgetFps: 40,
      demandFps: 10,
      throttledSessions: 0,
    });

    // 10 + 30 fits exactly: no cap.
    const a = await Camera.open(true, frames);
    expect(a.maxFps).toBe(30);
    // 10 + 30 + 30 > 40: the share is (40 − 10) / 2 = 15, for the new session and the old.
    const b = await Camera.open(false, frames);
    expect(b.maxFps).toBe(15);
    await waitFor(() => a.maxFps === 15, 10_000, 'flow to 15 on the first camera');
    expect(a.flows).toEqual([{ type: 'flow', maxFps: 15, reason: 'capacity' }]);
    // A third: (40 − 10) / 3 = 10, still at RECORDING_MIN_FPS.
    const c = await Camera.open(true, frames);
    expect(c.maxFps).toBe(10);
    await waitFor(() => a.maxFps === 10 && b.flows.length === 1, 10_000, 'flow to 10');

    // A fourth would get 7.5 < 10: refused, on WebSocket with 1013 and over HTTP with 503.
    const d = await StreamClient.connect(app.url, { token });
    d.send({ type: 'open', video: { width: 320, height: 240, fps: 30 } });
    expect(await d.closed).toEqual({
      code: 1013,
      reason: expect.stringMatching(/recording as many frames as it can/),
    });
    const refusedHttp = await call(app.url, 'POST', '/v1/sessions', {
      token,
      body: { video: { width: 320, height: 240, fps: 30 } },
    });
    expect(refusedHttp.status).toBe(503);
    expect(refusedHttp.body).toMatchObject({ error: 'over_capacity' });
    expect(Number(refusedHttp.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await stats()).capacity).toMatchObject({
      demandFps: 100,
      allowedFps: 40,
      shareFps: 10,
      throttledSessions: 3,
      refusedTotal: 2,
    });
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toMatch(/^framegate_recording_capacity_fps 40$/m);
    expect(metrics).toMatch(/^framegate_sessions_throttled 3$/m);
    expect(metrics).toMatch(/^framegate_sessions_refused_capacity_total 2$/m);

    // The obedient cameras stream at their caps; `b` keeps 30 fps and is closed after the grace.
    a.start();
    b.start();
    c.start();
    expect(await b.client.closed).toMatchObject({ code: 4029 });
    b.stop();
    // Interrupted, `b` sends nothing: its share goes back to the others until it resumes.
    await waitFor(
      async () => (await stats()).capacity.sessions === 3,
      10_000,
      'the claim of the interrupted session released',
    );
    await waitFor(() => a.maxFps === 15 && c.maxFps === 15, 10_000, 'flow back to 15');
    await new Promise((r) => setTimeout(r, 2_000));
    // The cameras that obey were never closed.
    expect(a.client.ws.readyState).toBe(a.client.ws.OPEN);
    expect(c.client.ws.readyState).toBe(c.client.ws.OPEN);

    // `a` ends normally: every frame it sent is in its recording.
    a.stop();
    await a.client.acksUntil(a.seq, 10_000);
    a.client.send({ type: 'close' });
    expect((await a.client.next('closed', 60_000)).frames).toBe(a.seq);
    await expectRecordingComplete(app.db, a.sessionId, a.seq);

    // `b` was interrupted by 4029 and abandoned when its resume window passed: the frames it got
    // acked, and any stored after its last ack, are all recorded.
    await waitFor(
      async () =>
        (await app.db.query(`SELECT status FROM sessions WHERE id = $1`, [b.sessionId])).rows[0]
          ?.status === 'abandoned',
      30_000,
      'the session that ignored flow abandoned',
    );
    const bRow = (
      await app.db.query<{ video_frames: string; last_seq: string }>(
        `SELECT video_frames, last_seq FROM sessions WHERE id = $1`,
        [b.sessionId],
      )
    ).rows[0];
    const bFrames = Number(bRow.video_frames);
    expect(bFrames).toBeGreaterThanOrEqual(b.client.maxAck);
    expect(Number(bRow.last_seq)).toBe(bFrames);
    await expectRecordingComplete(app.db, b.sessionId, bFrames);

    // With `a` and `b` gone, `c` fits at its declared 30 fps again.
    await waitFor(
      () => c.flows.some((f) => f.reason === 'recovered' && f.maxFps === 30),
      10_000,
      'the cap lifted',
    );
    const beside = canary.mark();
    c.stop();
    await c.client.acksUntil(c.seq, 10_000);
    c.client.send({ type: 'close' });
    expect((await c.client.next('closed', 60_000)).frames).toBe(c.seq);
    await expectRecordingComplete(app.db, c.sessionId, c.seq);

    expectAcksTimely(alone, beside);
    const { closedFrames } = await canary.stop();
    await expectRecordingComplete(app.db, canary.sessionId, closedFrames);
    expect((await stats()).capacity).toMatchObject({ sessions: 0, throttledSessions: 0 });
    await expectResourcesBack(baseline);
  });
});
