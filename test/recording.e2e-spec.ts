import type { RecordingStatus } from '../src/media/recording.service';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { call, startTestApp, type TestApp } from './support/app';
import { jpegFrames, pcmSine, probe } from './support/media';
import { descendantsMatching } from './support/processes';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

/** Real encoding on a busy two-core machine: generous, and each wait inside names what it missed. */
const RECORDING_TEST_MS = 240_000;
/** For one event of a test (a close with its finalized recording, a flow message). */
const EVENT_MS = 90_000;
jest.setTimeout(RECORDING_TEST_MS);

/**
 * Clients of one test, closed after it whatever happened, and the node's encoders back to idle
 * before the next test: a test that failed midway must not leave its session holding a slot.
 */
function sessionsPerTest(appOf: () => TestApp) {
  const clients: StreamClient[] = [];
  afterEach(async () => {
    const open = clients.splice(0).filter((c) => c.ws.readyState === c.ws.OPEN);
    for (const client of open) {
      client.send({ type: 'close' });
    }
    await waitFor(
      () => open.every((c) => c.ws.readyState === c.ws.CLOSED),
      EVENT_MS,
      'sessions closed after the test',
    ).finally(() => open.forEach((c) => c.ws.terminate()));
    const admin = hsToken({ sub: 'ops', scope: 'admin' });
    let last: RecordingStatus['encoders'] | undefined;
    await waitFor(
      async () => {
        const res = await call(appOf().url, 'GET', '/v1/admin/recording', { token: admin });
        last = (res.body as RecordingStatus).encoders;
        return last.active === 0 && last.waiting === 0;
      },
      EVENT_MS,
      'encoders idle after the test',
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(last)}`);
    });
  });
  return async (token: string): Promise<StreamClient> => {
    const client = await StreamClient.connect(appOf().url, { token });
    clients.push(client);
    return client;
  };
}

interface RecordingRow {
  status: string;
  path: string;
  frame_count: number;
  duration_ms: number;
  width: number;
  height: number;
  video_codec: string;
  audio_codec: string | null;
  sha256: string;
  failure_reason: string | null;
}

describe('live recording', () => {
  let app: TestApp;
  let frames640: Buffer[];
  const token = hsToken({ sub: 'teller', channel: 'branch-app' });

  beforeAll(async () => {
    app = await startTestApp({ env: { STREAM_MAX_FPS: '2000', STREAM_MAX_KBPS: '1000000' } });
    frames640 = await jpegFrames(640, 480);
  });
  afterAll(() => app.close());
  const connect = sessionsPerTest(() => app);

  async function recordingOf(sessionId: string): Promise<RecordingRow> {
    const r = await app.db.query<RecordingRow>('SELECT * FROM recordings WHERE session_id = $1', [
      sessionId,
    ]);
    return r.rows[0];
  }

  /** Streams video frames at the given capture times (ms) as fast as the acks allow. */
  async function stream(
    client: StreamClient,
    pts: number[],
    images: Buffer[],
    firstSeq = 1,
  ): Promise<number> {
    let seq = firstSeq - 1;
    for (const [i, t] of pts.entries()) {
      seq++;
      client.ws.send(encodeMediaMessage(Track.Video, seq, t, images[i % images.length]));
      if (seq % 50 === 0) {
        await client.acksUntil(seq - 25);
      }
    }
    return seq;
  }

  it('records 300 frames at 10 fps into a 30 s H.264 MP4 at the requested size, ready at close', async () => {
    const client = await connect(token);
    const opened = await client.open({ video: { width: 640, height: 480, fps: 10 } });
    const last = await stream(
      client,
      Array.from({ length: 300 }, (_, i) => i * 100),
      frames640,
    );
    client.send({ type: 'close' });
    const closed = await client.next('closed', EVENT_MS);
    expect(closed.recording).toMatchObject({ status: 'ready', durationMs: 30_000 });
    expect(last).toBe(300);

    const row = await recordingOf(opened.sessionId);
    expect(row).toMatchObject({
      status: 'ready',
      frame_count: 300,
      width: 640,
      height: 480,
      video_codec: 'h264',
    });
    const p = await probe(row.path);
    expect(p).toMatchObject({
      videoFrames: 300,
      width: 640,
      height: 480,
      videoCodec: 'h264',
      pixFmt: 'yuvj420p',
    });
    expect(Math.abs(p.durationMs - 30_000)).toBeLessThanOrEqual(100);
  });

  it('upscales 640×480 frames to a requested 1280×960 recording', async () => {
    const client = await connect(token);
    const opened = await client.open({
      video: { width: 640, height: 480, fps: 10 },
      recording: { width: 1280, height: 960 },
    });
    await stream(
      client,
      Array.from({ length: 30 }, (_, i) => i * 100),
      frames640,
    );
    client.send({ type: 'close' });
    expect((await client.next('closed', EVENT_MS)).recording.status).toBe('ready');
    const p = await probe((await recordingOf(opened.sessionId)).path);
    expect(p).toMatchObject({ videoFrames: 30, width: 1280, height: 960 });
  });

  it('keeps uneven capture timing: 7–12 fps over 60 s gives a 60 s video with every frame', async () => {
    const pts: number[] = [];
    let seed = 7;
    for (let t = 0; t <= 60_000;) {
      pts.push(t);
      seed = (seed * 48_271) % 2_147_483_647;
      t += Math.round(1000 / (7 + (seed % 6)));
    }
    const client = await connect(token);
    const opened = await client.open({ video: { width: 640, height: 480, fps: 10 } });
    await stream(client, pts, frames640);
    client.send({ type: 'close' });
    await client.next('closed', EVENT_MS);
    const p = await probe((await recordingOf(opened.sessionId)).path);
    expect(p.videoFrames).toBe(pts.length);
    const span = (pts.at(-1) as number) - pts[0];
    // The capture span plus one nominal frame interval (100 ms at 10 fps), within one frame.
    expect(Math.abs(p.durationMs - (span + 100))).toBeLessThanOrEqual(1000 / 7);
  });

  it('records video and PCM audio into H.264 + AAC with matching audio duration and start', async () => {
    const client = await connect(token);
    const opened = await client.open({
      video: { width: 640, height: 480, fps: 10 },
      audio: { sampleRate: 16_000, channels: 1 },
    });
    const pcm = pcmSine(5, 16_000);
    const chunk = 1_600 * 2; // 100 ms
    let seq = 0;
    for (let i = 0; i < 50; i++) {
      seq++;
      client.ws.send(encodeMediaMessage(Track.Video, seq, i * 100, frames640[i % 10]));
      seq++;
      client.ws.send(
        encodeMediaMessage(Track.Audio, seq, i * 100, pcm.subarray(i * chunk, (i + 1) * chunk)),
      );
    }
    await client.acksUntil(seq);
    client.send({ type: 'close' });
    expect((await client.next('closed', EVENT_MS)).recording.status).toBe('ready');
    const row = await recordingOf(opened.sessionId);
    expect(row).toMatchObject({ video_codec: 'h264', audio_codec: 'aac' });
    const p = await probe(row.path);
    expect(p.audioCodec).toBe('aac');
    expect(Math.abs((p.audioDurationMs as number) - 5_000)).toBeLessThanOrEqual(100);
    expect(Math.abs((p.audioStartMs as number) - p.videoStartMs)).toBeLessThan(100);
  });

  it('rejects a corrupt JPEG and a PNG bomb with bad_image and records every other frame', async () => {
    const corrupt = Buffer.concat([
      Buffer.from([0xff, 0xd8, 0xff, 0xe0]),
      Buffer.alloc(2000, 0x55),
    ]);
    // A PNG whose header declares 100 000 × 100 000 pixels.
    const bomb = Buffer.from(
      await (
        await import('sharp')
      )
        .default({ create: { width: 8, height: 8, channels: 3, background: 'red' } })
        .png()
        .toBuffer(),
    );
    bomb.writeUInt32BE(100_000, 16);
    bomb.writeUInt32BE(100_000, 20);
    const rssBefore = process.memoryUsage().rss;
    const client = await connect(token);
    const opened = await client.open({ video: { width: 640, height: 480, fps: 10 } });
    const images = Array.from({ length: 40 }, (_, i) =>
      i === 10 ? corrupt : i === 20 ? bomb : frames640[i % 10],
    );
    await stream(
      client,
      images.map((_, i) => i * 100),
      images,
    );
    client.send({ type: 'close' });
    const closed = await client.next('closed', EVENT_MS);
    const errors = client.messages.filter((m) => m.type === 'error');
    expect(errors).toEqual([
      expect.objectContaining({ code: 'bad_image', seq: 11 }),
      expect.objectContaining({ code: 'bad_image', seq: 21 }),
    ]);
    expect(closed.recording.status).toBe('ready');
    const p = await probe((await recordingOf(opened.sessionId)).path);
    expect(p.videoFrames).toBe(38);
    const session = await app.db.query(
      'SELECT video_frames, rejected_frames FROM sessions WHERE id = $1',
      [opened.sessionId],
    );
    expect(session.rows[0]).toMatchObject({ video_frames: '38', rejected_frames: '2' });
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(300 * 1024 * 1024);
  });

  it('survives its encoder dying mid-session: a new encoder continues the same recording', async () => {
    const client = await connect(token);
    const opened = await client.open({ video: { width: 640, height: 480, fps: 10 } });
    await stream(
      client,
      Array.from({ length: 100 }, (_, i) => i * 100),
      frames640,
    );
    await client.acksUntil(100);
    const pids = descendantsMatching('libx264').map((p) => p.pid);
    expect(pids.length).toBeGreaterThan(0);
    pids.forEach((pid) => process.kill(pid, 'SIGKILL'));
    await stream(
      client,
      Array.from({ length: 100 }, (_, i) => (100 + i) * 100),
      frames640,
      101,
    );
    client.send({ type: 'close' });
    const closed = await client.next('closed', EVENT_MS);
    expect(closed.recording.status).toBe('ready');
    const p = await probe((await recordingOf(opened.sessionId)).path);
    expect(p.videoFrames).toBe(200);
    expect(Math.abs(p.durationMs - 20_000)).toBeLessThanOrEqual(100);
  });

  it('fills silence when a session declares audio but sends none, so video fragments keep flowing', async () => {
    const client = await connect(token);
    const opened = await client.open({
      video: { width: 640, height: 480, fps: 10 },
      audio: { sampleRate: 16_000, channels: 1 },
    });
    await stream(
      client,
      Array.from({ length: 100 }, (_, i) => i * 100),
      frames640,
    );
    client.send({ type: 'close' });
    expect((await client.next('closed', EVENT_MS)).recording.status).toBe('ready');
    const p = await probe((await recordingOf(opened.sessionId)).path);
    expect(p.videoFrames).toBe(100);
    expect(p.audioCodec).toBe('aac');
    // Silence up to one second behind the last frame.
    expect(p.audioDurationMs).toBeGreaterThanOrEqual(8_800);
  });
});

/** Nice level and scheduling policy of this process's H.264 encoders (libx264), from /proc. */
function videoEncoders(): Array<{ nice: number; policy: number }> {
  return descendantsMatching('libx264').map(({ nice, policy }) => ({ nice, policy }));
}

const SCHED_IDLE = 5;

describe('recording backpressure', () => {
  let app: TestApp;
  const token = hsToken({ sub: 'teller', channel: 'branch-app' });

  beforeAll(async () => {
    app = await startTestApp({
      env: { STREAM_MAX_FPS: '5000', STREAM_MAX_KBPS: '1000000', RECORDING_MAX_ENCODERS: '1' },
    });
  });
  afterAll(() => app.close());
  const connect = sessionsPerTest(() => app);

  const framesOf = async (sessionId: string) => {
    const r = await app.db.query<{ path: string; status: string }>(
      'SELECT path, status FROM recordings WHERE session_id = $1',
      [sessionId],
    );
    return probe(r.rows[0]?.path);
  };

  it('acks frames faster than the encoder, tells the client to slow down, and still records them all', async () => {
    const small = await jpegFrames(320, 180);
    const client = await connect(token);
    // Scaling and padding every frame in sharp (its aspect is not the recording's) makes this
    // session slower to encode than to store.
    const opened = await client.open({
      video: { width: 320, height: 180, fps: 10 },
      recording: { width: 640, height: 480 },
    });
    // 10 s of capture at once: far more than BEHIND_MS ahead of the encoder on any machine. No
    // more than that: behind, the encoder runs under SCHED_IDLE and crawls while the machine is
    // busy with anything else.
    for (let seq = 1; seq <= 100; seq++) {
      client.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, small[seq % 10]));
    }
    // Durability does not wait for the encoder.
    await client.acksUntil(100, EVENT_MS);
    expect(await client.next('flow', EVENT_MS)).toMatchObject({ reason: 'encoder_backlog' });
    // Behind, its encoders (the one it had, and the tail encoders it split its backlog across)
    // yield the CPU to ingest.
    await waitFor(
      () => {
        const encoders = videoEncoders();
        return (
          encoders.length > 0 && encoders.every((e) => e.policy === SCHED_IDLE && e.nice === 19)
        );
      },
      EVENT_MS,
      'every encoder in SCHED_IDLE at nice 19',
    );
    // Upscaling 10 s of frames at once is also over the session's image budget: that `flow`
    // (image_budget) may come before the encoder's `recovered`.
    let flow = await client.next('flow', EVENT_MS);
    while (flow.reason === 'image_budget') {
      flow = await client.next('flow', EVENT_MS);
    }
    expect(flow).toMatchObject({ reason: 'recovered' });
    client.send({ type: 'close' });
    expect((await client.next('closed', EVENT_MS)).recording.status).toBe('ready');
    expect((await framesOf(opened.sessionId)).videoFrames).toBe(100);
  });

  it('gives encoder slots to sessions with frames, and encodes one beyond RECORDING_MAX_ENCODERS from its spool', async () => {
    const frames = await jpegFrames(640, 480);
    const admin = hsToken({ sub: 'ops', scope: 'admin' });
    const encoders = async () => {
      const res = await call(app.url, 'GET', '/v1/admin/recording', { token: admin });
      return res.body as RecordingStatus;
    };
    const statusOf = async (sessionId: string) =>
      (
        await app.db.query<{ status: string }>(
          'SELECT status FROM recordings WHERE session_id = $1',
          [sessionId],
        )
      ).rows[0]?.status;
    const first = await connect(token);
    const a = await first.open({ video: { width: 640, height: 480, fps: 10 } });
    const second = await connect(token);
    const b = await second.open({ video: { width: 640, height: 480, fps: 10 } });
    // Open but idle: no slot taken, nothing waiting.
    expect((await encoders()).encoders).toMatchObject({ active: 0, waiting: 0 });
    expect(await statusOf(b.sessionId)).toBe('recording');

    // The second session streams first and gets the only slot.
    for (let seq = 1; seq <= 20; seq++) {
      second.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
    await second.acksUntil(20);
    for (let seq = 1; seq <= 50; seq++) {
      first.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
    await first.acksUntil(50);
    const busy = await encoders();
    expect(busy.encoders).toMatchObject({ active: 1, waiting: 1 });
    // The waiting session's frames count in the backlog before any encoder has seen them.
    expect(busy.recorders.find((r) => r.sessionId === a.sessionId)).toMatchObject({
      backlogFrames: 50,
      encodingFrames: 0,
      fromSpool: true,
      started: false,
    });
    expect(busy.recorders.find((r) => r.sessionId === b.sessionId)).toMatchObject({
      started: true,
    });
    await waitFor(
      async () => (await statusOf(a.sessionId)) === 'pending',
      EVENT_MS,
      'waiting recording pending',
    );

    for (let seq = 21; seq <= 50; seq++) {
      second.ws.send(encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, frames[seq % 10]));
    }
    await second.acksUntil(50);
    second.send({ type: 'close' });
    first.send({ type: 'close' });
    expect((await second.next('closed', EVENT_MS)).recording.status).toBe('ready');
    expect((await first.next('closed', EVENT_MS)).recording.status).toBe('ready');
    expect((await framesOf(a.sessionId)).videoFrames).toBe(50);
    expect((await framesOf(b.sessionId)).videoFrames).toBe(50);
    expect((await encoders()).encoders).toMatchObject({ active: 0, waiting: 0 });
  });
});
