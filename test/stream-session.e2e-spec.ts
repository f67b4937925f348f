import { ErrorCode } from '../src/common/error-code';
import { call, startTestApp, type TestApp } from './support/app';
import { jpegFrames } from './support/media';
import { spooledFrames } from './support/spool-reader';
import { payloadFor, StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

describe('stream sessions over WebSocket', () => {
  let app: TestApp;
  const token = hsToken({ sub: 'alice', channel: 'branch-app' });

  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(() => app.close());

  it('opens a session, merges acks for 300 frames, and spools exactly those frames in order', async () => {
    const client = await StreamClient.connect(app.url, { token });
    const opened = await client.open({
      params: { transactionId: 'TX-300' },
      video: { width: 640, height: 480, fps: 10 },
    });
    expect(opened).toMatchObject({ lastSeq: 0, ack: { intervalMs: 200, maxFrames: 50 } });
    for (let seq = 1; seq <= 300; seq++) {
      client.sendFrame(seq, seq * 100, payloadFor(seq));
    }
    const acks = await client.acksUntil(300);
    expect(acks.at(-1)).toBe(300);
    // Merged: fewer acks than frames. How many depends on the 200 ms ack timer, so on the load.
    expect(acks.length).toBeLessThan(300);
    expect([...acks].sort((a, b) => a - b)).toEqual(acks);

    const frames = await spooledFrames(app.dataDir, opened.sessionId);
    expect(frames.map((f) => f.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(frames[41]?.payload.equals(payloadFor(42))).toBe(true);
    expect(frames[41]?.pts).toBe(4200);

    client.send({ type: 'close' });
    const closed = await client.next('closed');
    expect(closed).toMatchObject({
      sessionId: opened.sessionId,
      frames: 300,
      recording: { status: 'failed', reason: 'no video frames to record' },
    });
    expect((await client.closed).code).toBe(1000);

    const row = await app.db.query(
      'SELECT status, last_seq, video_frames, rejected_frames FROM sessions WHERE id = $1',
      [opened.sessionId],
    );
    expect(row.rows[0]).toMatchObject({
      status: 'closed',
      last_seq: '300',
      video_frames: '0',
      rejected_frames: '300',
    });
  });

  it('refuses a frame whose pts jumps (0xFFFFFFFF after 0) with a recoverable error, stores nothing of it, and records the resent frames', async () => {
    const images = await jpegFrames(320, 240, 3);
    const client = await StreamClient.connect(app.url, { token });
    const opened = await client.open({ video: { width: 320, height: 240, fps: 10 } });
    client.sendFrame(1, 0, images[0]);
    client.sendFrame(2, 0xffffffff, images[1]);
    // Sent before the client could see the error: dropped, not a gap.
    client.sendFrame(3, 0, images[2]);

    expect(await client.next('error')).toEqual({
      type: 'error',
      code: ErrorCode.ValidationFailed,
      message: expect.stringContaining('resend from seq 2') as unknown,
      seq: 2,
    });
    expect(await client.acksUntil(1)).toEqual([1]);
    // The connection stays: the client resends from the refused seq with plausible times.
    client.sendFrame(2, 100, images[1]);
    client.sendFrame(3, 200, images[2]);
    expect((await client.acksUntil(3)).at(-1)).toBe(3);

    const frames = await spooledFrames(app.dataDir, opened.sessionId);
    expect(frames.map((f) => [f.seq, f.pts])).toEqual([
      [1, 0],
      [2, 100],
      [3, 200],
    ]);
    client.send({ type: 'close' });
    const closed = await client.next('closed', 30_000);
    expect(closed).toMatchObject({ frames: 3, recording: { status: 'ready' } });
    // Three frames 100 ms apart, not 49.7 days.
    expect(closed.recording.durationMs).toBeLessThan(1000);
    expect((await client.closed).code).toBe(1000);
  });

  it('answers ping with pong and stores a msg once, however often it is resent', async () => {
    const client = await StreamClient.connect(app.url, { token });
    const opened = await client.open();
    client.send({ type: 'ping', t: 42 });
    expect(await client.next('pong')).toEqual({ type: 'pong', t: 42 });
    client.send({ type: 'msg', id: 'note-1', body: { text: 'customer signed' } });
    client.send({ type: 'msg', id: 'note-1', body: { text: 'customer signed' } });
    expect(await client.next('msg.ack')).toEqual({ type: 'msg.ack', id: 'note-1' });
    expect(await client.next('msg.ack')).toEqual({ type: 'msg.ack', id: 'note-1' });
    const rows = await app.db.query(
      'SELECT direction, client_id, body FROM session_messages WHERE session_id = $1',
      [opened.sessionId],
    );
    expect(rows.rows).toEqual([
      { direction: 'in', client_id: 'note-1', body: { text: 'customer signed' } },
    ]);
    client.close();
  });

  it('answers a flood of control messages with quota_exceeded and stays open', async () => {
    const client = await StreamClient.connect(app.url, { token });
    for (let i = 0; i < 80; i++) {
      client.send({ type: 'ping', t: i });
    }
    expect(await client.next('error')).toMatchObject({ code: 'quota_exceeded' });
    // The bucket refills with time: ask again until a ping is answered rather than sleeping.
    let tries = 0;
    await waitFor(
      () => {
        if (client.messages.some((m) => m.type === 'pong' && m.t === 'later')) {
          return true;
        }
        if (tries++ % 10 === 0) {
          client.send({ type: 'ping', t: 'later' });
        }
        return false;
      },
      30_000,
      'a pong once the control bucket refilled',
    );
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    client.close();
  });

  it('pushes a business message to the live client and stores it', async () => {
    const client = await StreamClient.connect(app.url, { token });
    const opened = await client.open();
    const admin = hsToken({ sub: 'ops', channel: 'console', scope: 'admin' });
    const res = await call(app.url, 'POST', `/v1/sessions/${opened.sessionId}/messages`, {
      token: admin,
      body: { id: 'push-1', body: { prompt: 'please look at the camera' } },
    });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: 'push-1', delivered: true });
    expect(await client.next('msg')).toEqual({
      type: 'msg',
      id: 'push-1',
      body: { prompt: 'please look at the camera' },
    });
    const stranger = await call(app.url, 'POST', `/v1/sessions/${opened.sessionId}/messages`, {
      token: hsToken({ sub: 'mallory' }),
      body: { id: 'push-2', body: {} },
    });
    expect(stranger.status).toBe(404);
    client.close();
  });

  it('resumes after an abrupt kill: resend from lastSeq + 1, every frame exactly once', async () => {
    const first = await StreamClient.connect(app.url, { token });
    const opened = await first.open();
    for (let seq = 1; seq <= 120; seq++) {
      first.sendFrame(seq, seq * 100, payloadFor(seq));
    }
    const acks = await first.acksUntil(100);
    const ackedBeforeKill = acks.at(-1) ?? 0;
    // More frames in flight, then the connection dies without a close frame.
    for (let seq = 121; seq <= 150; seq++) {
      first.sendFrame(seq, seq * 100, payloadFor(seq));
    }
    first.ws.terminate();
    await waitFor(async () => {
      const r = await app.db.query('SELECT status FROM sessions WHERE id = $1', [opened.sessionId]);
      return r.rows[0]?.status === 'interrupted';
    });

    const second = await StreamClient.connect(app.url, { token });
    second.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: opened.resumeToken });
    const resumed = await second.next('opened');
    expect(resumed.sessionId).toBe(opened.sessionId);
    expect(resumed.lastSeq).toBeGreaterThanOrEqual(ackedBeforeKill);
    // The client keeps every unacked frame: it resends from its last ack; duplicates are dropped.
    for (let seq = ackedBeforeKill + 1; seq <= 200; seq++) {
      second.sendFrame(seq, seq * 100, payloadFor(seq));
    }
    expect((await second.acksUntil(200)).at(-1)).toBe(200);
    const frames = await spooledFrames(app.dataDir, opened.sessionId);
    expect(frames.map((f) => f.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(frames.every((f) => f.payload.equals(payloadFor(f.seq)))).toBe(true);

    const row = await app.db.query<{ status_history: Array<{ status: string }> }>(
      'SELECT status_history FROM sessions WHERE id = $1',
      [opened.sessionId],
    );
    expect(row.rows[0].status_history.map((h: { status: string }) => h.status)).toEqual([
      'open',
      'interrupted',
      'open',
    ]);
    second.close();
  });

  it('closes the old connection with 4009 when the session is resumed elsewhere', async () => {
    const first = await StreamClient.connect(app.url, { token });
    const opened = await first.open();
    const second = await StreamClient.connect(app.url, { token });
    second.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: opened.resumeToken });
    await second.next('opened');
    expect((await first.closed).code).toBe(4009);
    second.close();
  });

  it.each([
    ['another subject', { sub: 'mallory' }, (o: { resumeToken: string }) => o.resumeToken],
    ['a wrong resume token', {}, () => 'x'.repeat(43)],
  ])('refuses a resume by %s with 4004', async (_name, claims, resumeTokenOf) => {
    const owner = await StreamClient.connect(app.url, { token });
    const opened = await owner.open();
    owner.ws.terminate();
    const other = await StreamClient.connect(app.url, {
      token: hsToken({ channel: 'branch-app', ...claims }),
    });
    other.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: resumeTokenOf(opened) });
    expect((await other.closed).code).toBe(4004);
  });

  it('exposes Prometheus metrics without credentials, counts only', async () => {
    const res = await fetch(`${app.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/^# TYPE framegate_frames_received_total counter$/m);
    const frames = Number(/^framegate_frames_received_total (\d+)$/m.exec(text)?.[1]);
    expect(frames).toBeGreaterThanOrEqual(300);
    expect(text).toMatch(/^framegate_acks_sent_total \d+$/m);
    expect(text).not.toMatch(/alice|branch-app/);
  });
});
