import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { JobQueue } from '../src/queue/job-queue.service';
import type { WebhookDeliveryView } from '../src/webhooks/webhook-api.schema';
import { signatureHeader } from '../src/webhooks/webhook-signature';
import {
  DELIVERY_QUEUE,
  USER_AGENT,
  WebhookService,
  type WebhookRequest,
} from '../src/webhooks/webhook.service';
import { call, startTestApp, type TestApp } from './support/app';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken } from './support/tokens';
import { verifyWithDocsCode } from './support/verify-webhook';
import { WebhookReceiver } from './support/webhook-receiver';
import { waitFor } from './support/wait';

const SECRET = 'whsec_test_0123456789abcdefghijklmnopqrstuvwxyz';

interface Listed {
  items: WebhookDeliveryView[];
  nextCursor: string | null;
}

interface DeliveryRow {
  id: string;
  state: string;
  attempts: number;
  secret: string | null;
  delivered_at: Date | null;
}

interface AttemptRow {
  attempt: number;
  at: Date;
  outcome: string | null;
  status_code: number | null;
  error: string | null;
  response_excerpt: string | null;
  duration_ms: number | null;
}

async function deliveryOf(db: Pool, idempotencyId: string): Promise<DeliveryRow | undefined> {
  const { rows } = await db.query<DeliveryRow>(
    `SELECT id, state, attempts, secret, delivered_at FROM webhook_deliveries WHERE idempotency_id = $1`,
    [idempotencyId],
  );
  return rows[0];
}

async function attemptsOf(db: Pool, idempotencyId: string): Promise<AttemptRow[]> {
  const { rows } = await db.query<AttemptRow>(
    `SELECT a.attempt, a.at, a.outcome, a.status_code, a.error, a.response_excerpt, a.duration_ms
       FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
      WHERE d.idempotency_id = $1 ORDER BY a.attempt`,
    [idempotencyId],
  );
  return rows;
}

/** Waits until the delivery is final (its pg-boss job done too), then returns it. */
async function settled(app: TestApp, idempotencyId: string): Promise<DeliveryRow> {
  const queue = app.started.app.get(JobQueue);
  let row: DeliveryRow | undefined;
  await waitFor(
    async () => {
      row = await deliveryOf(app.db, idempotencyId);
      if (!row || row.state === 'pending') {
        return false;
      }
      const job = await queue.boss.getJobById(DELIVERY_QUEUE, row.id);
      return job?.state === 'completed';
    },
    90_000,
    `delivery ${idempotencyId} final`,
  );
  return row!;
}

function request(
  receiver: WebhookReceiver,
  path: string,
  over: Partial<WebhookRequest> = {},
): WebhookRequest {
  return {
    idempotencyId: `${randomUUID()}:completed`,
    url: receiver.url(path),
    secret: SECRET,
    event: 'job.completed',
    payload: {
      jobId: randomUUID(),
      state: 'completed',
      outputs: [{ name: 'out.mp4', bytes: 1234 }],
    },
    subject: 'alice',
    ...over,
  };
}

describe('webhooks', () => {
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    receiver = await WebhookReceiver.start();
  });
  afterAll(() => receiver.close());

  describe('delivery, retries and audit', () => {
    let app: TestApp;
    let webhooks: WebhookService;

    beforeAll(async () => {
      app = await startTestApp({
        env: {
          WEBHOOK_RETRY_LIMIT: '2',
          WEBHOOK_RETRY_DELAY_SECONDS: '1',
          WEBHOOK_TIMEOUT_MS: '2000',
        },
      });
      webhooks = app.started.app.get(WebhookService);
    });
    afterAll(() => app.close());

    it('delivers once on the first try, signed so that the documented code verifies it', async () => {
      const req = request(receiver, '/first');
      await webhooks.enqueue(req);
      const row = await settled(app, req.idempotencyId);

      expect(row).toMatchObject({ state: 'delivered', attempts: 1, secret: null });
      expect(row.delivered_at).toBeInstanceOf(Date);
      const got = receiver.forId(req.idempotencyId);
      expect(got).toHaveLength(1);
      const [hit] = got;
      expect(hit.method).toBe('POST');
      expect(hit.headers['content-type']).toBe('application/json');
      expect(hit.headers['user-agent']).toBe(USER_AGENT);
      expect(USER_AGENT).toMatch(/^framegate-webhooks\/\d+\.\d+\.\d+/);
      expect(hit.headers['framegate-signature']).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      const body = JSON.parse(hit.rawBody.toString('utf8'));
      expect(body).toEqual({
        id: req.idempotencyId,
        event: 'job.completed',
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        data: req.payload,
      });
      expect(
        await verifyWithDocsCode([
          {
            rawBody: hit.rawBody,
            header: hit.headers['framegate-signature'] as string,
            secret: SECRET,
          },
        ]),
      ).toEqual([true]);

      const attempts = await attemptsOf(app.db, req.idempotencyId);
      expect(attempts).toMatchObject([
        { attempt: 1, outcome: 'delivered', status_code: 200, error: null },
      ]);
      expect(attempts[0].duration_ms).toBeGreaterThanOrEqual(0);
    });

    it('the documented code refuses a tampered body, a wrong secret and a stale or missing timestamp', async () => {
      const body = JSON.stringify({
        id: 'x:completed',
        event: 'job.completed',
        createdAt: '2026-01-01T00:00:00.000Z',
        data: { a: 1 },
      });
      const now = Math.floor(Date.now() / 1000);
      const header = signatureHeader(SECRET, body, now);
      const mac = header.split('v1=')[1];
      const answers = await verifyWithDocsCode([
        { rawBody: body, header, secret: SECRET },
        { rawBody: body.replace('"a":1', '"a":2'), header, secret: SECRET },
        { rawBody: `${body} `, header, secret: SECRET },
        { rawBody: body, header, secret: `${SECRET}x` },
        { rawBody: body, header: signatureHeader(SECRET, body, now - 600), secret: SECRET },
        { rawBody: body, header: signatureHeader(SECRET, body, now + 600), secret: SECRET },
        {
          rawBody: body,
          header: signatureHeader(SECRET, body, now - 3600),
          secret: SECRET,
          toleranceSeconds: 7200,
        },
        { rawBody: body, header: `t=${now - 1},v1=${mac}`, secret: SECRET },
        { rawBody: body, header: `v1=${mac}`, secret: SECRET },
        { rawBody: body, header: `t=${now}`, secret: SECRET },
        { rawBody: body, header: undefined, secret: SECRET },
        { rawBody: body, header: `t=${now},v1=${'0'.repeat(64)},v1=${mac}`, secret: SECRET },
      ]);
      expect(answers).toEqual([
        true, // as signed
        false, // body changed
        false, // a byte appended
        false, // wrong secret
        false, // 10 min old (the default tolerance is 5 min)
        false, // 10 min ahead (the checking process starts a moment later: no tighter margin)
        true, // old, within the receiver's own tolerance
        false, // the timestamp changed under the signature
        false, // no timestamp
        false, // no signature
        false, // no header
        true, // one of several v1 values matches
      ]);
    });

    it('retries 500s with backoff and delivers on the third attempt, under one webhook id', async () => {
      const longBody = 'x'.repeat(5000);
      receiver.on('/flaky', (_r, n) => (n <= 2 ? { status: 500, body: longBody } : 200));
      const req = request(receiver, '/flaky');
      await webhooks.enqueue(req);
      const row = await settled(app, req.idempotencyId);

      expect(row).toMatchObject({ state: 'delivered', attempts: 3, secret: null });
      const got = receiver.forId(req.idempotencyId);
      expect(got.map((r) => r.status)).toEqual([500, 500, 200]);
      // The same event every time: same id, same bytes; each attempt signed afresh.
      expect(new Set(got.map((r) => r.rawBody.toString('base64'))).size).toBe(1);
      expect(
        await verifyWithDocsCode(
          got.map((r) => ({
            rawBody: r.rawBody,
            header: r.headers['framegate-signature'] as string,
            secret: SECRET,
          })),
        ),
      ).toEqual([true, true, true]);

      const attempts = await attemptsOf(app.db, req.idempotencyId);
      expect(attempts.map((a) => [a.attempt, a.outcome, a.status_code])).toEqual([
        [1, 'failed', 500],
        [2, 'failed', 500],
        [3, 'delivered', 200],
      ]);
      // The first 1 KB of an answer is kept, the rest never read.
      expect(attempts[0].response_excerpt).toBe('x'.repeat(1024));
      // pg-boss' backoff: retry n waits at least delay × 2^(n-1) (1 s, then 2 s). Lower bounds only.
      expect(attempts[1].at.getTime() - attempts[0].at.getTime()).toBeGreaterThanOrEqual(1000);
      expect(attempts[2].at.getTime() - attempts[1].at.getTime()).toBeGreaterThanOrEqual(2000);
    });

    it('retries 429, 408 and a receiver that times out, then delivers', async () => {
      receiver.on('/busy', (_r, n) => (n === 1 ? 429 : n === 2 ? 'hang' : 200));
      const req = request(receiver, '/busy');
      await webhooks.enqueue(req);
      const row = await settled(app, req.idempotencyId);
      expect(row.state).toBe('delivered');
      const attempts = await attemptsOf(app.db, req.idempotencyId);
      expect(attempts.map((a) => [a.outcome, a.status_code])).toEqual([
        ['failed', 429],
        ['failed', null],
        ['delivered', 200],
      ]);
      expect(attempts[1].error).toMatch(/timed out after 2000 ms/);

      receiver.on('/slow', (_r, n) => (n === 1 ? 408 : 204));
      const again = request(receiver, '/slow');
      await webhooks.enqueue(again);
      expect((await settled(app, again.idempotencyId)).state).toBe('delivered');
      expect((await attemptsOf(app.db, again.idempotencyId)).map((a) => a.status_code)).toEqual([
        408, 204,
      ]);
    });

    it('gives up after one attempt when the receiver answers 410 or 400', async () => {
      receiver.on('/gone', () => ({ status: 410, body: 'no such hook' }));
      receiver.on('/bad', () => 400);
      const gone = request(receiver, '/gone');
      const bad = request(receiver, '/bad');
      await Promise.all([webhooks.enqueue(gone), webhooks.enqueue(bad)]);
      for (const [req, status] of [
        [gone, 410],
        [bad, 400],
      ] as const) {
        const row = await settled(app, req.idempotencyId);
        expect(row).toMatchObject({
          state: 'gave_up',
          attempts: 1,
          secret: null,
          delivered_at: null,
        });
        expect(receiver.forId(req.idempotencyId)).toHaveLength(1);
        expect(await attemptsOf(app.db, req.idempotencyId)).toMatchObject([
          { attempt: 1, outcome: 'rejected', status_code: status },
        ]);
      }
      expect((await attemptsOf(app.db, gone.idempotencyId))[0].response_excerpt).toBe(
        'no such hook',
      );
    });

    it('retries a receiver that is down up to the limit, then gives up', async () => {
      const down = await WebhookReceiver.start();
      const url = down.url('/down');
      await down.close();
      const req = request(receiver, '/unused', { url });
      await webhooks.enqueue(req);
      const row = await settled(app, req.idempotencyId);
      // WEBHOOK_RETRY_LIMIT=2: the first attempt and two retries.
      expect(row).toMatchObject({ state: 'gave_up', attempts: 3, secret: null });
      const attempts = await attemptsOf(app.db, req.idempotencyId);
      expect(attempts.map((a) => a.outcome)).toEqual(['failed', 'failed', 'failed']);
      for (const a of attempts) {
        expect(a.error).toMatch(/ECONNREFUSED/);
      }
    });

    it('makes one delivery of an idempotency id however often it is enqueued', async () => {
      const req = request(receiver, '/once');
      await Promise.all([webhooks.enqueue(req), webhooks.enqueue(req), webhooks.enqueue(req)]);
      await settled(app, req.idempotencyId);
      // After delivery too, with another payload: still nothing new.
      await webhooks.enqueue({ ...req, payload: { other: true } });
      const { rows } = await app.db.query(
        `SELECT count(*)::int AS n FROM webhook_deliveries WHERE idempotency_id = $1`,
        [req.idempotencyId],
      );
      expect(rows[0].n).toBe(1);
      const jobs = await app.db.query(
        `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND data->>'deliveryId' = $2`,
        [DELIVERY_QUEUE, (await deliveryOf(app.db, req.idempotencyId))!.id],
      );
      expect(jobs.rows[0].n).toBe(1);
      expect(receiver.forId(req.idempotencyId)).toHaveLength(1);
    });

    it('does not follow redirects: a 302 is a failed attempt and its target is never asked', async () => {
      receiver.on('/moved', () => ({
        status: 302,
        headers: { location: receiver.url('/target') },
      }));
      const req = request(receiver, '/moved');
      await webhooks.enqueue(req);
      const row = await settled(app, req.idempotencyId);
      expect(row.state).toBe('gave_up');
      expect(
        (await attemptsOf(app.db, req.idempotencyId)).map((a) => [a.outcome, a.status_code]),
      ).toEqual([
        ['failed', 302],
        ['failed', 302],
        ['failed', 302],
      ]);
      expect(receiver.received.filter((r) => r.path === '/target')).toEqual([]);
    });

    it('refuses a malformed request and stores nothing', async () => {
      const cases: Array<[Partial<WebhookRequest>, string]> = [
        [{ secret: 'short' }, 'secret'],
        [{ url: 'ftp://example.com/hook' }, 'url'],
        [{ url: 'https://user:pw@example.com/hook' }, 'url'],
        [{ event: 'Job Completed' }, 'event'],
        [{ idempotencyId: 'with space' }, 'idempotencyId'],
        [{ idempotencyId: 'bad\r\nheader' }, 'idempotencyId'],
        [{ payload: { big: 'x'.repeat(300 * 1024) } }, 'payload'],
      ];
      for (const [over, field] of cases) {
        const req = request(receiver, '/never', over);
        await expect(webhooks.enqueue(req)).rejects.toMatchObject({
          code: 'validation_failed',
          extra: { fields: expect.arrayContaining([expect.objectContaining({ field })]) },
        });
        expect(await deliveryOf(app.db, req.idempotencyId)).toBeUndefined();
      }
      expect(receiver.received.filter((r) => r.path === '/never')).toEqual([]);
    });

    it('lists deliveries with their attempts to admins, never their secrets', async () => {
      const admin = hsToken({ sub: 'ops', scope: 'admin' });
      const res = await call<Listed>(app.url, 'GET', '/v1/admin/webhooks?state=delivered&limit=2', {
        token: admin,
      });
      expect(res.status).toBe(200);
      expect(res.body.items).toHaveLength(2);
      for (const item of res.body.items) {
        expect(item.state).toBe('delivered');
        expect(item.attempts.at(-1)).toMatchObject({ outcome: 'delivered' });
      }
      expect(res.body.nextCursor).toEqual(expect.any(String));
      const next = await call<Listed>(
        app.url,
        'GET',
        `/v1/admin/webhooks?state=delivered&limit=2&cursor=${res.body.nextCursor}`,
        { token: admin },
      );
      expect(next.status).toBe(200);
      const firstIds = res.body.items.map((i) => i.id);
      for (const item of next.body.items) {
        expect(firstIds).not.toContain(item.id);
      }

      const all = await call<Listed>(app.url, 'GET', '/v1/admin/webhooks?limit=200', {
        token: admin,
      });
      expect(JSON.stringify(all.body)).not.toContain(SECRET);
      const flaky = all.body.items.find((i) => i.url.endsWith('/flaky'));
      expect(flaky?.attempts.map((a) => a.statusCode)).toEqual([500, 500, 200]);

      const user = hsToken({ sub: 'alice', scope: 'media:process' });
      expect((await call(app.url, 'GET', '/v1/admin/webhooks', { token: user })).status).toBe(403);
      const bad = await call(app.url, 'GET', '/v1/admin/webhooks?state=lost', { token: admin });
      expect(bad.status).toBe(400);
      expect(bad.body).toMatchObject({ error: 'validation_failed', fields: [{ field: 'state' }] });
    });

    it('counts attempts by outcome in /metrics', async () => {
      const text = await (await fetch(app.started.metricsUrl)).text();
      const count = (outcome: string): number =>
        Number(
          new RegExp(
            `^framegate_webhook_attempts_total\\{outcome="${outcome}"\\} (\\d+)$`,
            'm',
          ).exec(text)?.[1] ?? 0,
        );
      // The attempts of the tests above, on this node of their own.
      expect(count('delivered')).toBe(5);
      expect(count('failed')).toBe(11);
      expect(count('rejected')).toBe(2);
      expect(count('blocked')).toBe(0);
    });
  });

  describe('destinations (SSRF)', () => {
    let app: TestApp;
    let webhooks: WebhookService;

    beforeAll(async () => {
      app = await startTestApp({
        env: { WEBHOOK_ALLOW_PRIVATE: 'false', WEBHOOK_ALLOW_HTTP: 'false' },
      });
      webhooks = app.started.app.get(WebhookService);
    });
    afterAll(() => app.close());

    it.each([
      ['https://127.0.0.1/hook', /loopback/],
      ['https://localhost/hook', /localhost resolves to .*loopback/],
      ['https://[::1]/hook', /loopback/],
      ['https://[::ffff:127.0.0.1]/hook', /loopback .* inside IPv4-mapped/],
      ['https://169.254.169.254/latest/meta-data', /link-local/],
      ['https://10.1.2.3/hook', /private/],
      ['https://172.16.0.1/hook', /private/],
      ['https://192.168.1.10/hook', /private/],
      ['https://[fc00::1]/hook', /unique local/],
      ['https://[fe80::1]/hook', /link-local/],
      ['https://0.0.0.0/hook', /this network/],
      ['https://2130706433/hook', /loopback/],
      ['https://[64:ff9b::10.0.0.1]/hook', /private .* inside NAT64/],
      ['http://93.184.215.14/hook', /https/],
    ])('refuses %s with validation_failed', async (url, why) => {
      await expect(webhooks.validateUrl(url)).rejects.toMatchObject({
        code: 'validation_failed',
        extra: { fields: [{ field: 'webhook.url', problem: expect.stringMatching(why) }] },
      });
    });

    it('accepts a public https address', async () => {
      await expect(webhooks.validateUrl('https://93.184.215.14/hook')).resolves.toBeUndefined();
    });

    it('refuses to enqueue a loopback URL: nothing stored, nothing sent', async () => {
      const req = request(receiver, '/private', {
        url: `https://127.0.0.1:${receiver.port}/private`,
      });
      await expect(webhooks.enqueue(req)).rejects.toMatchObject({ code: 'validation_failed' });
      expect(await deliveryOf(app.db, req.idempotencyId)).toBeUndefined();
      expect(receiver.received.filter((r) => r.path === '/private')).toEqual([]);
    });
  });

  it('delivers a retry left pending by a stopped service once, after it starts again', async () => {
    const databaseUrl = await createTestDatabase();
    const env = { WEBHOOK_RETRY_LIMIT: '5', WEBHOOK_RETRY_DELAY_SECONDS: '1' };
    let restarted = false;
    // Refused until the first service is gone, so only the second can deliver it.
    receiver.on('/restart', () => (restarted ? 200 : 503));
    const req = request(receiver, '/restart');
    let first: TestApp | undefined = await startTestApp({ databaseUrl, env });
    let second: TestApp | undefined;
    try {
      await first.started.app.get(WebhookService).enqueue(req);
      await waitFor(
        async () =>
          (await attemptsOf(first!.db, req.idempotencyId)).some((a) => a.outcome === 'failed'),
        60_000,
        'a failed attempt before the restart',
      );
      await first.close();
      first = undefined;
      const stoppedAt = Date.now();
      restarted = true;
      second = await startTestApp({ databaseUrl, env });
      const row = await settled(second, req.idempotencyId);

      expect(row.state).toBe('delivered');
      const got = receiver.forId(req.idempotencyId);
      const delivered = got.filter((r) => r.status === 200);
      expect(delivered).toHaveLength(1);
      expect(got.filter((r) => r.at < stoppedAt).map((r) => r.status)).toContain(503);
      expect(delivered[0].at).toBeGreaterThanOrEqual(stoppedAt);
      expect(got.at(-1)).toBe(delivered[0]);
      const attempts = await attemptsOf(second.db, req.idempotencyId);
      // Every request is an audited attempt (one aborted by the stop may not have reached it).
      expect(attempts.length).toBeGreaterThanOrEqual(got.length);
      expect(attempts.at(-1)).toMatchObject({ outcome: 'delivered', status_code: 200 });
      expect(attempts.slice(0, -1).map((a) => a.outcome)).toEqual(
        attempts.slice(0, -1).map(() => 'failed'),
      );
    } finally {
      await first?.close();
      await second?.close();
      await dropTestDatabase(databaseUrl);
    }
  });

  it('gives up a delivery whose last attempt never finished (pg-boss failed its job)', async () => {
    const app = await startTestApp({
      env: { WEBHOOK_RETRY_LIMIT: '0', WEBHOOK_TIMEOUT_MS: '60000' },
    });
    try {
      receiver.on('/lost', () => 'hang');
      const req = request(receiver, '/lost');
      await app.started.app.get(WebhookService).enqueue(req);
      await receiver.waitFor(req.idempotencyId, 1);
      const { id } = (await deliveryOf(app.db, req.idempotencyId))!;
      // What pg-boss does to a job whose node died during its last attempt once it expires: fail
      // it (the same statement), which hands it to the dead-letter queue.
      await app.started.app
        .get(JobQueue)
        .boss.fail(DELIVERY_QUEUE, id, { message: 'job failed by timeout in active state' });
      await waitFor(
        async () => (await deliveryOf(app.db, req.idempotencyId))?.state === 'gave_up',
        60_000,
        'the delivery given up',
      );
      expect(await deliveryOf(app.db, req.idempotencyId)).toMatchObject({ secret: null });
      expect(await attemptsOf(app.db, req.idempotencyId)).toMatchObject([
        { attempt: 1, outcome: 'interrupted', error: 'the node stopped during the attempt' },
      ]);
    } finally {
      await app.close();
    }
  });

  it('aborts an attempt under way when the service stops, audits it, and delivers it after the restart', async () => {
    const databaseUrl = await createTestDatabase();
    const env = { WEBHOOK_RETRY_LIMIT: '5', WEBHOOK_RETRY_DELAY_SECONDS: '1' };
    // The first request hangs (the attempt is under way when the service stops); later ones: 200.
    receiver.on('/stop', (_r, n) => (n === 1 ? 'hang' : 200));
    const req = request(receiver, '/stop');
    let first: TestApp | undefined = await startTestApp({ databaseUrl, env });
    let second: TestApp | undefined;
    try {
      await first.started.app.get(WebhookService).enqueue(req);
      await receiver.waitFor(req.idempotencyId, 1);
      await first.close();
      first = undefined;
      const { rows } = await (second = await startTestApp({ databaseUrl, env })).db.query<{
        outcome: string | null;
        error: string | null;
      }>(`SELECT outcome, error FROM webhook_attempts ORDER BY attempt LIMIT 1`);
      expect(rows).toEqual([{ outcome: 'failed', error: 'aborted: the node is shutting down' }]);

      const row = await settled(second, req.idempotencyId);
      expect(row).toMatchObject({ state: 'delivered', attempts: 2 });
      expect(receiver.forId(req.idempotencyId).map((r) => r.status)).toEqual([null, 200]);
    } finally {
      await first?.close();
      await second?.close();
      await dropTestDatabase(databaseUrl);
    }
  });
});
