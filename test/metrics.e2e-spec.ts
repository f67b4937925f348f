import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import parsePrometheusTextFormat, { type MetricFamily } from 'parse-prometheus-text-format';
import { call, startTestApp, type TestApp } from './support/app';
import { payloadFor, rejectedHandshake, StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

/** Scrapes and parses; the parser throws on anything that is not Prometheus text. */
async function scrape(url: string): Promise<MetricFamily[]> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain;.*version=0\.0\.4/);
  return parsePrometheusTextFormat(await res.text());
}

function family(families: MetricFamily[], name: string): MetricFamily {
  const found = families.find((f) => f.name === name);
  if (!found) {
    throw new Error(`no metric family ${name}`);
  }
  return found;
}

/** The value of a counter or gauge with exactly these labels (0 when the series is absent). */
function valueOf(
  families: MetricFamily[],
  name: string,
  labels: Record<string, string> = {},
): number {
  const series = family(families, name).metrics.find(
    (m) => JSON.stringify(m.labels ?? {}) === JSON.stringify(labels),
  );
  return series ? Number(series.value) : 0;
}

describe('metrics', () => {
  describe('on the service port', () => {
    let app: TestApp;
    const token = hsToken({ sub: 'metrics-user', channel: 'branch-app' });
    const admin = hsToken({ sub: 'ops', scope: 'admin' });

    beforeAll(async () => {
      app = await startTestApp();
    });
    afterAll(() => app.close());

    it('parses as Prometheus text, with every family typed and described', async () => {
      const families = await scrape(`${app.url}/metrics`);
      for (const name of [
        'framegate_connections',
        'framegate_frames_received_total',
        'framegate_handshakes_total',
        'framegate_connection_closes_total',
        'framegate_admin_actions_total',
        'framegate_webhook_attempts_total',
        'framegate_ack_latency_seconds',
        'framegate_spool_sync_seconds',
        'framegate_event_loop_lag_p99_seconds',
        'framegate_event_loop_lag_max_seconds',
      ]) {
        expect(family(families, name).help.length).toBeGreaterThan(0);
      }
      expect(family(families, 'framegate_ack_latency_seconds').type).toBe('HISTOGRAM');
      expect(family(families, 'framegate_spool_sync_seconds').type).toBe('HISTOGRAM');
      expect(family(families, 'framegate_handshakes_total').type).toBe('COUNTER');
    });

    it('has every metric the shipped alert rules and dashboard use', async () => {
      const families = new Set((await scrape(`${app.url}/metrics`)).map((f) => f.name));
      for (const file of ['prometheus-alerts.yml', 'grafana-dashboard.json']) {
        const text = readFileSync(join(__dirname, '..', 'docs', 'operations', file), 'utf8');
        const used = new Set(text.match(/framegate_[a-z0-9_]+/g));
        expect(used.size).toBeGreaterThanOrEqual(5);
        for (const name of used) {
          expect([file, families.has(name.replace(/_(bucket|sum|count)$/, ''))]).toEqual([
            file,
            true,
          ]);
        }
      }
    });

    it('moves its counters while a session streams, is refused, and is kicked', async () => {
      const before = await scrape(`${app.url}/metrics`);
      const accepted = { transport: 'ws', outcome: 'accepted' };
      const refusedAuth = { transport: 'ws', outcome: 'rejected_auth' };
      const ackCount = (f: MetricFamily[]) =>
        Number(family(f, 'framegate_ack_latency_seconds').metrics[0]?.count ?? 0);

      const refused = await rejectedHandshake(app.url, { token: 'not-a-jwt' });
      expect(refused.status).toBe(401);

      const client = await StreamClient.connect(app.url, { token });
      const opened = await client.open({ video: { width: 640, height: 480, fps: 10 } });
      for (let seq = 1; seq <= 120; seq++) {
        client.sendFrame(seq, seq * 100, payloadFor(seq));
      }
      await client.acksUntil(120);

      const kicked = await call(
        app.url,
        'POST',
        `/v1/admin/sessions/${opened.sessionId}/disconnect`,
        {
          token: admin,
        },
      );
      expect(kicked.status).toBe(200);
      expect((await client.closed).code).toBe(4003);

      // The close is audited (and counted) once the connection has detached.
      const kickedCloses = (f: MetricFamily[]) =>
        valueOf(f, 'framegate_connection_closes_total', { transport: 'ws', reason: 'kicked' });
      let after = before;
      await waitFor(async () => {
        after = await scrape(`${app.url}/metrics`);
        return kickedCloses(after) === kickedCloses(before) + 1;
      });
      expect(valueOf(after, 'framegate_handshakes_total', accepted)).toBe(
        valueOf(before, 'framegate_handshakes_total', accepted) + 1,
      );
      expect(valueOf(after, 'framegate_handshakes_total', refusedAuth)).toBe(
        valueOf(before, 'framegate_handshakes_total', refusedAuth) + 1,
      );
      expect(valueOf(after, 'framegate_frames_received_total')).toBe(
        valueOf(before, 'framegate_frames_received_total') + 120,
      );
      expect(valueOf(after, 'framegate_admin_actions_total', { action: 'kick' })).toBe(
        valueOf(before, 'framegate_admin_actions_total', { action: 'kick' }) + 1,
      );
      // One observation per merged ack, in cumulative buckets ending at +Inf.
      const acks =
        valueOf(after, 'framegate_acks_sent_total') - valueOf(before, 'framegate_acks_sent_total');
      expect(acks).toBeGreaterThan(0);
      expect(ackCount(after) - ackCount(before)).toBe(acks);
      // Every ack waited for at least one spool sync (closing syncs once more).
      const syncCount = (f: MetricFamily[]) =>
        Number(family(f, 'framegate_spool_sync_seconds').metrics[0]?.count ?? 0);
      expect(syncCount(after) - syncCount(before)).toBeGreaterThanOrEqual(acks);
      const buckets = family(after, 'framegate_ack_latency_seconds').metrics[0]?.buckets ?? {};
      // Cumulative: in the order of their bounds (object keys would put "1", "5", "10" first).
      const counts = Object.entries(buckets)
        .sort(
          ([a], [b]) =>
            Number(a.replace('+Inf', 'Infinity')) - Number(b.replace('+Inf', 'Infinity')),
        )
        .map(([, n]) => Number(n));
      expect(counts).toEqual([...counts].sort((a, b) => a - b));
      expect(buckets['+Inf']).toBe(String(ackCount(after)));
      // Counts only: no subject, channel or session id.
      const text = await (await fetch(`${app.url}/metrics`)).text();
      expect(text).not.toMatch(/metrics-user|branch-app|ops/);
      expect(text).not.toContain(opened.sessionId);
    });
  });

  describe('on METRICS_PORT', () => {
    let app: TestApp;

    beforeAll(async () => {
      app = await startTestApp({ env: { METRICS_PORT: '0' } });
    });
    afterAll(() => app.close());

    it('serves /metrics on its own port only', async () => {
      const { metricsUrl } = app.started;
      expect(metricsUrl).not.toBe(`${app.url}/metrics`);
      const families = await scrape(metricsUrl);
      expect(family(families, 'framegate_handshakes_total').type).toBe('COUNTER');

      const onService = await fetch(`${app.url}/metrics`);
      expect(onService.status).toBe(404);
      expect(await onService.json()).toMatchObject({ error: 'not_found' });

      const elsewhere = await fetch(new URL('/health/ready', metricsUrl));
      expect(elsewhere.status).toBe(404);
      expect(await elsewhere.json()).toMatchObject({ error: 'not_found' });
    });
  });
});
