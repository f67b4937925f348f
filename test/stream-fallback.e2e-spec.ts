import { call, startTestApp, type TestApp } from './support/app';
import { framesBody, postFrames } from './support/frames-body';
import { spooledFrames } from './support/spool-reader';
import { payloadFor, StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';
import { JPEG_MEDIA } from './support/media';

const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('HTTP fallback', () => {
  let app: TestApp;
  const token = hsToken({ sub: 'alice', channel: 'branch-app' });
  const open = { params: { transactionId: 'TX-http' }, video: { width: 320, height: 240, fps: 5 } };

  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(() => app.close());

  async function openOverHttp() {
    const res = await call(app.url, 'POST', '/v1/sessions', { token, body: open });
    expect(res.status).toBe(201);
    return res.body as { sessionId: string; resumeToken: string; lastSeq: number };
  }

  it('answers 400 validation_failed for an implausible pts, after storing the frames before it', async () => {
    const s = await openOverHttp();
    const wrapped = framesBody(1, 3, (seq) => (seq === 2 ? 0xffffffff : 0));
    const refused = await postFrames(app.url, s.sessionId, token, s.resumeToken, wrapped);
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ error: 'validation_failed' });
    expect(String(refused.body.message)).toMatch(/seq 2 .*resend from seq 2/);
    // Resent from the refused seq with plausible times, it is stored.
    expect(
      (await postFrames(app.url, s.sessionId, token, s.resumeToken, framesBody(2, 3))).body,
    ).toEqual({ ack: 3, media: JPEG_MEDIA });
    const frames = await spooledFrames(app.dataDir, s.sessionId);
    expect(frames.map((f) => [f.seq, f.pts])).toEqual([
      [1, 0],
      [2, 200],
      [3, 300],
    ]);
  });

  it('stores batches durably, drops resends, and answers 409 on a gap', async () => {
    const s = await openOverHttp();
    expect(await postFrames(app.url, s.sessionId, token, s.resumeToken, framesBody(1, 40))).toEqual(
      {
        status: 200,
        body: { ack: 40, media: JPEG_MEDIA },
      },
    );
    // A resend overlapping what is stored (the response was lost): the duplicates are dropped.
    expect(
      (await postFrames(app.url, s.sessionId, token, s.resumeToken, framesBody(31, 60))).body,
    ).toEqual({ ack: 60, media: JPEG_MEDIA });
    const gap = await postFrames(app.url, s.sessionId, token, s.resumeToken, framesBody(62, 70));
    expect(gap.status).toBe(409);
    expect(gap.body.error).toBe('conflict');
    // An empty batch tells where to resend from.
    expect(
      (await postFrames(app.url, s.sessionId, token, s.resumeToken, Buffer.alloc(0))).body,
    ).toEqual({ ack: 60, media: JPEG_MEDIA });

    const frames = await spooledFrames(app.dataDir, s.sessionId);
    expect(frames.map((f) => f.seq)).toEqual(range(1, 60));

    const msg = await call(app.url, 'POST', `/v1/sessions/${s.sessionId}/messages`, {
      token,
      headers: { 'x-resume-token': s.resumeToken },
      body: { id: 'm1', body: { text: 'hello over http' } },
    });
    expect(msg).toMatchObject({ status: 200, body: { id: 'm1' } });

    const closed = await call(app.url, 'POST', `/v1/sessions/${s.sessionId}/close`, {
      token,
      headers: { 'x-resume-token': s.resumeToken },
    });
    expect(closed.status).toBe(200);
    expect(closed.body).toMatchObject({
      sessionId: s.sessionId,
      frames: 60,
      recording: { status: 'failed', reason: 'no video frames to record' },
    });
  });

  it('refuses a wrong resume token, another subject, a bad header and a wrong content type', async () => {
    const s = await openOverHttp();
    expect(
      (await postFrames(app.url, s.sessionId, token, 'x'.repeat(43), framesBody(1, 1))).status,
    ).toBe(404);
    expect(
      (
        await postFrames(
          app.url,
          s.sessionId,
          hsToken({ sub: 'mallory' }),
          s.resumeToken,
          framesBody(1, 1),
        )
      ).status,
    ).toBe(404);
    const bad = Buffer.from(framesBody(1, 1));
    bad[4] = 9;
    const badHeader = await postFrames(app.url, s.sessionId, token, s.resumeToken, bad);
    expect(badHeader.status).toBe(400);
    expect(badHeader.body.error).toBe('protocol_error');
    const truncated = await postFrames(
      app.url,
      s.sessionId,
      token,
      s.resumeToken,
      framesBody(1, 2).subarray(0, 30),
    );
    expect(truncated.status).toBe(400);
    const wrongType = await fetch(`${app.url}/v1/sessions/${s.sessionId}/frames`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'x-resume-token': s.resumeToken,
        'content-type': 'image/jpeg',
      },
      body: Buffer.from([1, 2, 3]),
    });
    expect(wrongType.status).toBe(415);
  });

  it('survives a lost response: resend from the stored ack, every frame exactly once', async () => {
    const s = await openOverHttp();
    await postFrames(app.url, s.sessionId, token, s.resumeToken, framesBody(1, 25));
    // The client never saw this response and resends the same batch plus more.
    await postFrames(app.url, s.sessionId, token, s.resumeToken, framesBody(26, 50));
    const res = await postFrames(app.url, s.sessionId, token, s.resumeToken, framesBody(26, 80));
    expect(res.body).toEqual({ ack: 80, media: JPEG_MEDIA });
    expect((await spooledFrames(app.dataDir, s.sessionId)).map((f) => f.seq)).toEqual(range(1, 80));
  });

  it('switches WS → HTTP → WS within one session without losing or duplicating a frame', async () => {
    const ws1 = await StreamClient.connect(app.url, { token });
    const opened = await ws1.open(open);
    for (let seq = 1; seq <= 100; seq++) {
      ws1.sendFrame(seq, seq * 100, payloadFor(seq));
    }
    const acked = (await ws1.acksUntil(50)).at(-1) ?? 0;
    ws1.ws.terminate();

    // HTTP resumes from the last ack the client saw; the server drops what it already stored.
    const http = await postFrames(
      app.url,
      opened.sessionId,
      token,
      opened.resumeToken,
      framesBody(acked + 1, 160),
    );
    expect(http).toEqual({ status: 200, body: { ack: 160, media: JPEG_MEDIA } });

    const ws2 = await StreamClient.connect(app.url, { token });
    ws2.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: opened.resumeToken });
    const resumed = await ws2.next('opened');
    expect(resumed.lastSeq).toBe(160);
    for (let seq = 161; seq <= 220; seq++) {
      ws2.sendFrame(seq, seq * 100, payloadFor(seq));
    }
    ws2.send({ type: 'close' });
    expect(await ws2.next('closed')).toMatchObject({ frames: 220 });

    const frames = await spooledFrames(app.dataDir, opened.sessionId);
    expect(frames.map((f) => f.seq)).toEqual(range(1, 220));
    expect(frames.every((f) => f.payload.equals(payloadFor(f.seq)))).toBe(true);
    await waitFor(async () => {
      const r = await app.db.query(
        `SELECT type, detail FROM session_events WHERE session_id = $1 AND type = 'attached'`,
        [opened.sessionId],
      );
      return r.rows.length === 3;
    });
  });
});
