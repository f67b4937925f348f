import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { FRAMES_CONTENT_TYPE } from '../src/stream/fallback.controller';
import { call, startTestApp, type TestApp } from './support/app';
import { besideCanary as besideCanaryOf } from './support/canary';
import { rawRequest } from './support/raw-http';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';
import { JPEG_MEDIA } from './support/media';

const MB = 1024 * 1024;
const RATE_PER_MIN = 300;
// One refusal a minute: spent by the first one, and back only a minute later, so what follows it
// within the test is limited for certain.
const REFUSED_PER_MIN = 1;
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

/** `total` bytes of zeros, one shared 64 KiB chunk at a time (nothing allocated per request). */
function zeros(total: number): () => Buffer | null {
  const chunk = Buffer.alloc(64 * 1024);
  let left = total;
  return () => {
    if (left <= 0) {
      return null;
    }
    const n = Math.min(left, chunk.length);
    left -= n;
    return n === chunk.length ? chunk : chunk.subarray(0, n);
  };
}

/**
 * A fallback body of `frames` messages of `payloadBytes`, sent as each message's prefix and header
 * (16 fresh bytes) then one shared payload: the client allocates next to nothing, so the RSS the
 * test measures (client and service share the process) is the service's.
 */
function lazyFrames(frames: number, payloadBytes: number, onChunk: () => void) {
  const payload = Buffer.alloc(payloadBytes, 7);
  let seq = 0;
  let headerNext = true;
  return {
    length: frames * (4 + 12 + payloadBytes),
    nextChunk: (): Buffer | null => {
      onChunk();
      if (!headerNext) {
        headerNext = true;
        return payload;
      }
      if (seq >= frames) {
        return null;
      }
      seq++;
      headerNext = false;
      const head = Buffer.alloc(4 + 12);
      head.writeUInt32BE(12 + payloadBytes, 0);
      encodeMediaMessage(Track.Video, seq, seq * 100, Buffer.alloc(0)).copy(head, 4);
      return head;
    },
  };
}

describe('HTTP bodies, rate limits and headers under attack', () => {
  let app: TestApp;
  const token = hsToken({ sub: 'alice', channel: 'branch-app' });
  const admin = hsToken({ sub: 'ops', scope: 'admin' });
  const open = { video: { width: 320, height: 240, fps: 5 } };

  beforeAll(async () => {
    app = await startTestApp({
      env: {
        ACK_INTERVAL_MS: '500',
        TRUST_PROXY: 'loopback',
        HTTP_BODY_IDLE_TIMEOUT_MS: '1000',
        HTTP_RATE_LIMIT_PER_MIN: String(RATE_PER_MIN),
        HTTP_REFUSED_RATE_LIMIT_PER_MIN: String(REFUSED_PER_MIN),
        HTTP_FRAMES_BODY_LIMIT_BYTES: String(64 * MB),
      },
    });
  });
  afterAll(() => app.close());

  const besideCanary = (attack: () => Promise<void>) => besideCanaryOf(app, attack);

  async function openSession(from: string) {
    const res = await call(app.url, 'POST', '/v1/sessions', {
      token,
      body: open,
      headers: { 'x-forwarded-for': from },
    });
    expect(res.status).toBe(201);
    return res.body as { sessionId: string; resumeToken: string };
  }

  it('answers 20 unauthenticated 16 MB fallback bodies 401 before they are sent, and closes', async () => {
    await besideCanary(async () => {
      const before = process.memoryUsage.rss();
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          rawRequest(app.url, {
            method: 'POST',
            path: '/v1/sessions/x/frames',
            headers: { 'content-type': FRAMES_CONTENT_TYPE, 'x-forwarded-for': `10.1.0.${i}` },
            bodyLength: 16 * MB,
            nextChunk: zeros(16 * MB),
          }),
        ),
      );
      for (const answer of answers) {
        expect(answer.status).toBe(401);
        expect(JSON.parse(answer.body)).toMatchObject({ error: 'invalid_token' });
        expect(answer.headers.connection).toBe('close');
        expect(answer.closedByServer).toBe(true);
        // The answer came while most of the body was still unsent, and ended the upload.
        expect(answer.sentWhenAnswered).toBeLessThan(8 * MB);
        expect(answer.sent).toBeLessThan(16 * MB);
      }
      const sent = answers.reduce((sum, a) => sum + a.sent, 0);
      console.log(
        `20 × 16 MB unauthenticated: ${(sent / MB).toFixed(1)} MB sent in all before the 401s ` +
          `closed them; RSS +${((process.memoryUsage.rss() - before) / MB).toFixed(1)} MB`,
      );
    });
  });

  it('answers stalled bodies 408, deep JSON 400, and floods 429 with Retry-After', async () => {
    await besideCanary(async () => {
      const session = await openSession('10.2.0.1');
      const stalledJson = await rawRequest(app.url, {
        method: 'POST',
        path: '/v1/sessions',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        bodyLength: 100,
        nextChunk: (() => {
          let sent = false;
          return () => (sent ? null : ((sent = true), Buffer.from('{"video":')));
        })(),
      });
      expect(stalledJson.status).toBe(408);
      expect(JSON.parse(stalledJson.body)).toMatchObject({ error: 'request_timeout' });
      expect(stalledJson.closedByServer).toBe(true);
      const stalledFrames = await rawRequest(app.url, {
        method: 'POST',
        path: `/v1/sessions/${session.sessionId}/frames`,
        headers: {
          authorization: `Bearer ${token}`,
          'x-resume-token': session.resumeToken,
          'content-type': FRAMES_CONTENT_TYPE,
        },
        bodyLength: 1000,
        // A length prefix and part of a message, then silence.
        nextChunk: (() => {
          let sent = false;
          return () => (sent ? null : ((sent = true), Buffer.from([0, 0, 0, 100, 1, 1, 0, 0])));
        })(),
      });
      expect(stalledFrames.status).toBe(408);
      expect(JSON.parse(stalledFrames.body)).toMatchObject({ error: 'request_timeout' });

      const deep = '['.repeat(5000) + ']'.repeat(5000);
      const deepOpen = await call(app.url, 'POST', '/v1/sessions', { token, raw: deep });
      expect(deepOpen.status).toBe(400);
      expect(deepOpen.body).toEqual({
        error: 'bad_request',
        message: 'request body nests deeper than 64 levels',
      });
      const deepMessage = await call(
        app.url,
        'POST',
        `/v1/sessions/${session.sessionId}/messages`,
        {
          token,
          headers: { 'x-resume-token': session.resumeToken },
          raw: `{"id":"m1","body":${deep}}`,
        },
      );
      expect(deepMessage.status).toBe(400);

      // The general budget: a minute's worth at once, then 429.
      const flood = { 'x-forwarded-for': '10.2.0.2' };
      let granted = 0;
      let limited: Awaited<ReturnType<typeof call>> | undefined;
      while (!limited && granted <= 2 * RATE_PER_MIN) {
        const res = await call(app.url, 'GET', '/v1/nothing-here', { token, headers: flood });
        if (res.status === 429) {
          limited = res;
        } else {
          expect(res.status).toBe(404);
          granted++;
        }
      }
      expect(granted).toBeGreaterThanOrEqual(RATE_PER_MIN);
      expect(limited?.body).toMatchObject({ error: 'rate_limited' });
      expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      // Anonymous probes are not limited.
      expect((await call(app.url, 'GET', '/health/live', { headers: flood })).status).toBe(200);

      // The refused budget: once spent, even a valid token waits (nothing is verified).
      const refusedFrom = { 'x-forwarded-for': '10.2.0.3' };
      const bad = () =>
        call(app.url, 'POST', '/v1/tickets', { token: 'bad', headers: refusedFrom });
      expect((await bad()).status).toBe(401);
      expect((await bad()).status).toBe(429);
      const afterRefusals = await call(app.url, 'POST', '/v1/tickets', {
        token,
        headers: refusedFrom,
      });
      expect(afterRefusals.status).toBe(429);
      expect(afterRefusals.body.message).toMatch(/refused/);
      expect(Number(afterRefusals.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      // Another address is not affected.
      expect(
        (
          await call(app.url, 'POST', '/v1/tickets', {
            token,
            headers: { 'x-forwarded-for': '10.2.0.4' },
          })
        ).status,
      ).toBe(201);

      await waitFor(
        async () => {
          const rows = await app.db.query<{ remote_address: string; n: number }>(
            `SELECT remote_address, SUM(count)::int AS n FROM connection_audits
            WHERE transport = 'http' AND error = 'rate_limited' GROUP BY remote_address`,
          );
          return (
            rows.rows.some((r) => r.remote_address === '10.2.0.2') &&
            rows.rows.some((r) => r.remote_address === '10.2.0.3')
          );
        },
        10_000,
        'audited 429s',
      );
    });
  });

  it('streams an authenticated 60 MB frames body into the spool in bounded memory', async () => {
    await besideCanary(async () => {
      const session = await openSession('10.3.0.1');
      // Memory the upload holds on to: buffers still referenced after a collection. (RSS says
      // little here: the socket chunks already processed are garbage V8 collects at its own
      // pace, and the allocator keeps freed pages.) Twice: V8 frees the backing stores of dead
      // ArrayBuffers on a background thread after a collection, so one gc() on a busy machine
      // still counted ~13 MB of garbage (CI read 18 MB); the next collection waits for that sweep.
      const retained = (): number => {
        gc();
        gc();
        return process.memoryUsage().arrayBuffers;
      };
      const before = retained();
      let peak = 0;
      let chunks = 0;
      const body = lazyFrames(600, 100 * 1024, () => {
        // Every 64 frames (6.4 MB): a collection in this process stalls the canary too.
        if (++chunks % 128 === 0) {
          peak = Math.max(peak, retained() - before);
        }
      });
      const res = await rawRequest(app.url, {
        method: 'POST',
        path: `/v1/sessions/${session.sessionId}/frames`,
        headers: {
          authorization: `Bearer ${token}`,
          'x-resume-token': session.resumeToken,
          'content-type': FRAMES_CONTENT_TYPE,
          'x-forwarded-for': '10.3.0.1',
        },
        bodyLength: body.length,
        nextChunk: body.nextChunk,
        timeoutMs: 60_000,
      });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toEqual({ ack: 600, media: JPEG_MEDIA });
      // A body held whole would retain its 60 MB; streamed, what stays is bounded whatever the
      // body's size: the spool's unwritten tail (written early past 4 MiB), the recorder's queue
      // of frames to decode (64 frames or 4 MiB), the frame being decoded, and the socket buffers
      // of both ends (the client runs in this process too).
      expect(peak).toBeLessThan(16 * MB);
      const closed = await call(app.url, 'POST', `/v1/sessions/${session.sessionId}/close`, {
        token,
        headers: { 'x-resume-token': session.resumeToken, 'x-forwarded-for': '10.3.0.1' },
      });
      expect(closed.body).toMatchObject({ frames: 600 });
      console.log(`60 MB upload: buffers retained at most +${(peak / MB).toFixed(1)} MB`);
    });
  });

  it('shows readiness details to an admin only, and sends the security headers', async () => {
    const anonymous = await call(app.url, 'GET', '/health/ready');
    expect(anonymous.body).toEqual({ status: 'ok' });
    const detailed = await call(app.url, 'GET', '/health/ready', { token: admin });
    expect(detailed.body).toMatchObject({
      status: 'ok',
      details: { disk: { path: expect.any(String) }, ffmpeg: { path: expect.any(String) } },
    });
    const headers = anonymous.headers;
    expect(headers.get('x-content-type-options')).toBe('nosniff');
    expect(headers.get('referrer-policy')).toBe('no-referrer');
    expect(headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(headers.get('content-security-policy')).not.toContain('upgrade-insecure-requests');
    // Plain HTTP: no HSTS (see the TLS test for it).
    expect(headers.get('strict-transport-security')).toBeNull();
    expect(headers.get('x-powered-by')).toBeNull();
  });
});
