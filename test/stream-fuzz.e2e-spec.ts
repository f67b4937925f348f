import fc from 'fast-check';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { call, startTestApp, type TestApp } from './support/app';
import { spooledFrames } from './support/spool-reader';
import { payloadFor, StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';

/** What a misbehaving client may legitimately get: protocol errors, never an internal error. */
const ALLOWED_CLOSE = new Set([1000, 1002, 1005, 1009, 4000, 4004]);
const ALLOWED_ERRORS = new Set([
  'validation_failed',
  'invalid_state',
  'quota_exceeded',
  'invalid_token',
  'insufficient_scope',
]);

type Step = { kind: 'text'; data: string } | { kind: 'binary'; data: Uint8Array };

const controlTypes = fc.constantFrom(
  'open',
  'resume',
  'msg',
  'ping',
  'auth',
  'close',
  'ack',
  'opened',
  '',
  'OPEN',
);

/** Plausible control messages with wrong, missing or extra fields. */
const mutatedControl = fc
  .record({
    type: controlTypes,
    extra: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), {
      maxKeys: 4,
    }),
  })
  .map(({ type, extra }) => JSON.stringify({ type, ...extra }));

const validOpen = fc.constant(
  JSON.stringify({ type: 'open', video: { width: 320, height: 240, fps: 10 } }),
);

/** A valid media message with one byte of its header or payload changed, or random bytes. */
const mutatedMedia = fc
  .record({
    seq: fc.integer({ min: 0, max: 5 }),
    track: fc.constantFrom(Track.Video, Track.Audio),
    at: fc.integer({ min: 0, max: 15 }),
    value: fc.integer({ min: 0, max: 255 }),
    mutate: fc.boolean(),
  })
  .map(({ seq, track, at, value, mutate }) => {
    const m = encodeMediaMessage(track, Math.max(seq, 0), 0, payloadFor(seq, 4));
    if (mutate) {
      m[at % m.length] = value;
    }
    return new Uint8Array(m);
  });

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.string({ maxLength: 40 }).map((data) => ({ kind: 'text' as const, data })),
    weight: 2,
  },
  {
    arbitrary: fc.json({ maxDepth: 3 }).map((data) => ({ kind: 'text' as const, data })),
    weight: 2,
  },
  { arbitrary: mutatedControl.map((data) => ({ kind: 'text' as const, data })), weight: 4 },
  { arbitrary: validOpen.map((data) => ({ kind: 'text' as const, data })), weight: 2 },
  { arbitrary: mutatedMedia.map((data) => ({ kind: 'binary' as const, data })), weight: 4 },
  {
    arbitrary: fc.uint8Array({ maxLength: 48 }).map((data) => ({ kind: 'binary' as const, data })),
    weight: 2,
  },
);

describe('fuzzing the live stream endpoint', () => {
  let app: TestApp;
  const token = hsToken({ sub: 'fuzzer', channel: 'fuzz' });

  beforeAll(async () => {
    app = await startTestApp({
      env: {
        CONTROL_MESSAGES_PER_SEC: '1000',
        // The good session streams on however long the fuzzing takes: a frame-rate quota would
        // end it (4029) once the fuzzing outlasts the flow grace, as it does on a busy machine.
        STREAM_MAX_FPS: '10000',
        QUOTA_IP_HANDSHAKES_PER_MIN: '100000',
        QUOTA_HANDSHAKES_PER_MIN: '100000',
      },
    });
  });
  afterAll(() => app.close());

  it('answers random and mutated messages with the right errors while a good session streams on', async () => {
    const good = await StreamClient.connect(app.url, {
      token: hsToken({ sub: 'teller', channel: 'branch-app' }),
    });
    const opened = await good.open();
    let sent = 0;
    const streaming = setInterval(() => {
      if (sent < 400) {
        sent++;
        good.sendFrame(sent, sent * 20, payloadFor(sent));
      }
    }, 5);

    const outcomes = new Map<string, number>();
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
          const client = await StreamClient.connect(app.url, { token });
          for (const s of steps) {
            if (client.ws.readyState !== client.ws.OPEN) {
              break;
            }
            client.ws.send(s.kind === 'text' ? s.data : Buffer.from(s.data));
          }
          // Let the server answer, then end the connection ourselves if it is still open.
          client.send({ type: 'ping', t: 'done' });
          const ended = await Promise.race([
            client.closed,
            client.next('pong', 5_000).then(
              () => null,
              () => null,
            ),
          ]);
          if (ended) {
            expect(ALLOWED_CLOSE).toContain(ended.code);
            outcomes.set(`close ${ended.code}`, (outcomes.get(`close ${ended.code}`) ?? 0) + 1);
          } else {
            client.close();
            await client.closed;
            outcomes.set('open', (outcomes.get('open') ?? 0) + 1);
          }
          for (const m of client.messages) {
            if (m.type === 'error') {
              expect(ALLOWED_ERRORS).toContain(m.code);
            }
          }
        }),
        { numRuns: 150, seed: 20261124 },
      );
    } finally {
      clearInterval(streaming);
    }
    // The fuzzing provoked both protocol closes and recoverable errors, not just one path.
    expect(outcomes.get('close 4000')).toBeGreaterThan(0);
    expect(outcomes.get('open')).toBeGreaterThan(0);

    while (sent < 400) {
      sent++;
      good.sendFrame(sent, sent * 20, payloadFor(sent));
    }
    expect((await good.acksUntil(400)).at(-1)).toBe(400);
    expect(good.ws.readyState).toBe(good.ws.OPEN);
    const frames = await spooledFrames(app.dataDir, opened.sessionId);
    expect(frames.map((f) => f.seq)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    expect((await call(app.url, 'GET', '/health/live')).status).toBe(200);
    good.close();
  });

  it('answers random HTTP fallback bodies with a 4xx, never a 500', async () => {
    const created = await call(app.url, 'POST', '/v1/sessions', {
      token,
      body: { video: { width: 320, height: 240, fps: 10 } },
    });
    const { sessionId, resumeToken } = created.body as { sessionId: string; resumeToken: string };
    const statuses = new Set<number>();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (bytes) => {
        const res = await fetch(`${app.url}/v1/sessions/${sessionId}/frames`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'x-resume-token': resumeToken,
            'content-type': 'application/vnd.framegate.frames',
          },
          body: Buffer.from(bytes),
        });
        statuses.add(res.status);
        expect([200, 400, 409, 413]).toContain(res.status);
        const body = (await res.json()) as Record<string, unknown>;
        expect(res.status === 200 ? typeof body.ack : typeof body.error).toBe(
          res.status === 200 ? 'number' : 'string',
        );
      }),
      { numRuns: 100, seed: 20261124 },
    );
    expect(statuses.has(400)).toBe(true);
  });
});
