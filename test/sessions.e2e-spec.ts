import { call, startTestApp, type TestApp } from './support/app';
import { hsToken } from './support/tokens';
import { JPEG_MEDIA } from './support/media';

describe('sessions over REST', () => {
  let app: TestApp;
  const alice = hsToken({ sub: 'alice', channel: 'branch-app' });
  const bob = hsToken({ sub: 'bob', channel: 'branch-app' });
  const admin = hsToken({ sub: 'ops', channel: 'console', scope: 'admin' });
  const open = {
    params: { transactionId: 'TX-1001', branch: 'Zurich' },
    video: { width: 640, height: 480, fps: 10 },
    audio: { sampleRate: 16000, channels: 1 },
    recording: { width: 1280, height: 960 },
  };

  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(() => app.close());

  it('creates a session and answers with the fields of opened', async () => {
    const res = await call(app.url, 'POST', '/v1/sessions', { token: alice, body: open });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      lastSeq: 0,
      ack: { intervalMs: 200, maxFrames: 50 },
      limits: { maxFrameBytes: 2 * 1024 * 1024, maxFps: 30 },
      // The session declared PCM audio.
      media: { ...JPEG_MEDIA, audio: { codec: 'pcm' } },
    });
    expect(res.body.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(String(res.body.resumeToken).length).toBeGreaterThanOrEqual(40);

    const row = await app.db.query('SELECT * FROM sessions WHERE id = $1', [res.body.sessionId]);
    expect(row.rows[0]).toMatchObject({
      subject: 'alice',
      channel: 'branch-app',
      status: 'open',
      params: open.params,
      video: open.video,
      audio: open.audio,
      recording_settings: open.recording,
      node: 'test-node',
    });
    expect(row.rows[0].resume_token_hash).not.toBe(res.body.resumeToken);
    expect(row.rows[0].status_history).toEqual([
      { status: 'open', at: expect.any(String), cause: 'opened' },
    ]);
  });

  it('shows a session to its owner and to an admin, and is not found for anyone else', async () => {
    const created = await call(app.url, 'POST', '/v1/sessions', { token: alice, body: open });
    const id = String(created.body.sessionId);

    const mine = await call(app.url, 'GET', `/v1/sessions/${id}`, { token: alice });
    expect(mine.status).toBe(200);
    expect(mine.body).toMatchObject({
      id,
      subject: 'alice',
      status: 'open',
      params: open.params,
      recording: { id: expect.any(String), status: 'recording', durationMs: null },
    });
    expect(mine.body).not.toHaveProperty('resumeTokenHash');

    expect((await call(app.url, 'GET', `/v1/sessions/${id}`, { token: admin })).status).toBe(200);

    const stranger = await call(app.url, 'GET', `/v1/sessions/${id}`, { token: bob });
    const missing = await call(
      app.url,
      'GET',
      `/v1/sessions/00000000-0000-4000-8000-000000000000`,
      { token: bob },
    );
    expect(stranger.status).toBe(404);
    expect(stranger.body).toEqual(missing.body);
    expect(stranger.body).toEqual({ error: 'not_found', message: 'session not found' });
    expect((await call(app.url, 'GET', '/v1/sessions/not-a-uuid', { token: alice })).status).toBe(
      404,
    );
  });

  it.each([
    ['an unknown field', { ...open, colour: 'red' }, 'colour'],
    ['params over 8 KiB', { ...open, params: { blob: 'x'.repeat(9000) } }, 'params'],
    ['a zero width', { ...open, video: { width: 0, height: 480, fps: 10 } }, 'video.width'],
    [
      'an odd recording size',
      { ...open, recording: { width: 641, height: 480 } },
      'recording.width',
    ],
    [
      'three audio channels',
      { ...open, audio: { sampleRate: 16000, channels: 3 } },
      'audio.channels',
    ],
    ['no video', { params: {} }, 'video'],
    ['a non-object body', [1, 2, 3], '(root)'],
  ])('rejects %s with 400 naming the field', async (_name, body, field) => {
    const res = await call(app.url, 'POST', '/v1/sessions', { token: alice, body });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('validation_failed');
    expect(res.body.fields).toEqual(expect.arrayContaining([expect.objectContaining({ field })]));
  });

  it('rejects invalid JSON with 400 and an oversized body with 413', async () => {
    const bad = await call(app.url, 'POST', '/v1/sessions', { token: alice, raw: '{"video": ' });
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual({
      error: 'bad_request',
      message: expect.stringMatching(/malformed.*JSON/),
    });

    const huge = await call(app.url, 'POST', '/v1/sessions', {
      token: alice,
      raw: JSON.stringify({ ...open, params: { blob: 'x'.repeat(300 * 1024) } }),
    });
    expect(huge.status).toBe(413);
    expect(huge.body.error).toBe('payload_too_large');
  });

  it('answers an unknown route with a JSON 404 once authenticated', async () => {
    const res = await call(app.url, 'GET', '/v1/nothing-here', { token: alice });
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('not_found');
  });

  it('needs stream:publish to create a session', async () => {
    const res = await call(app.url, 'POST', '/v1/sessions', { token: admin, body: open });
    expect(res.status).toBe(403);
  });
});
