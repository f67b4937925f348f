/**
 * bench:admin: the admin API's lookups on a realistic table. Seeds BENCH_SESSIONS sessions (with
 * business params), three connection audits per session and refusal rows, then times each admin
 * query over HTTP against the running service, and, in the same run, the same session lookup
 * straight on Postgres with and without the GIN index (the baseline: the planner forbidden every
 * index, so it scans the table, as it would without ix_sessions_params) and a naive text query
 * (`params->>'transactionId' = $1`, which no index serves). Progress goes to stderr, one JSON
 * object with every figure next to its baseline to stdout.
 *
 * Env (all optional):
 * - BENCH_SESSIONS (10000): sessions seeded; audits are three times as many, plus refusals;
 * - BENCH_REQUESTS (200): timed requests per query (after 20 untimed warm-up requests);
 * - BENCH_P95_AIM_MS (100): the p95 every admin query must stay under (exit 1 otherwise).
 *
 * The service runs in this process (startApp), so the HTTP figures include the client's share of
 * one event loop: they are upper bounds of what a separate client would see.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'pg';
import { sessionSearchSql } from '../src/admin/admin-sessions.service';
import { startApp, type StartedApp } from '../src/app.factory';
import { runMigrations } from '../src/database/migrate';
import { testDir } from '../test/support/dirs';
import { PgProcess } from '../test/support/pg-process';
import { hsToken } from '../test/support/tokens';
import { Cleanup, describe, machineInfo, progressFor, sourceState } from './support/run-info';

const progress = progressFor('admin');

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 10_000);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 200);
const P95_AIM_MS = Number(process.env.BENCH_P95_AIM_MS ?? 100);
const WARMUP = 20;
const CHANNELS = 20;
const SUBJECTS = 500;
const ADDRESSES = 1000;

interface Stats {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number =>
    round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0);
  return { n: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1) };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** A deterministic pseudo-random sequence, so every run asks the same questions. */
function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    return s / 2 ** 31;
  };
}

/** Times `REQUESTS` calls of `run(i)` after `WARMUP` untimed ones; `check` sees each answer. */
async function time(run: (i: number) => Promise<void>): Promise<Stats> {
  for (let i = 0; i < WARMUP; i++) {
    await run(i);
  }
  const samples: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t0 = performance.now();
    await run(WARMUP + i);
    samples.push(performance.now() - t0);
  }
  return stats(samples);
}

async function seed(db: Pool): Promise<{ sessions: number; audits: number }> {
  // Spread over 30 days (whatever their number), so time ranges and keyset pages have something to cut.
  await db.query(
    `INSERT INTO sessions (id, subject, channel, status, params, video, resume_token_hash, node,
                           created_at, updated_at, closed_at, last_seq, video_frames, bytes_in)
     SELECT gen_random_uuid(), 'teller-' || (g % ${SUBJECTS}), 'channel-' || (g % ${CHANNELS}),
            CASE WHEN g % 10 = 0 THEN 'abandoned' ELSE 'closed' END,
            jsonb_build_object('transactionId', 'TX-' || g, 'branch', 'B' || (g % 200),
                               'customerId', 'C-' || (g % 3000), 'amount', g % 1000),
            '{"width":640,"height":480,"fps":10}', 'x', 'bench-node',
            now() - (g * (2592000.0 / $1::int)) * interval '1 second', now(), now(), 300, 300, 7500000
       FROM generate_series(1, $1::int) g`,
    [SESSIONS],
  );
  // Per session: the accepted connection that opened it (closed normally, or lost), a resume
  // and one refused handshake from the same address; plus token refusals from other addresses.
  await db.query(
    `INSERT INTO connection_audits (id, at, node, transport, remote_address, subject, channel,
                                    outcome, error, session_id, closed_at, close_code,
                                    close_reason, duration_ms, bytes_in, frames_in)
     SELECT gen_random_uuid(), s.created_at + (k * interval '1 second'), 'bench-node', 'ws',
            '10.0.' || ((n % ${ADDRESSES}) / 250) || '.' || (n % 250), s.subject, s.channel,
            CASE WHEN k = 2 THEN 'rejected_quota' ELSE 'accepted' END,
            CASE WHEN k = 2 THEN 'quota_exceeded' END,
            CASE WHEN k = 2 THEN NULL ELSE s.id END,
            CASE WHEN k = 2 THEN NULL ELSE s.created_at + interval '60 seconds' END,
            CASE WHEN k = 0 THEN 1006 WHEN k = 1 THEN 1000 END,
            CASE WHEN k = 0 THEN 'connection_lost' WHEN k = 1 THEN 'normal' END,
            CASE WHEN k = 2 THEN NULL ELSE 60000 END,
            CASE WHEN k = 2 THEN NULL ELSE 3750000 END,
            CASE WHEN k = 2 THEN NULL ELSE 150 END
       FROM (SELECT *, row_number() OVER () AS n FROM sessions) s, generate_series(0, 2) k`,
  );
  await db.query(
    `INSERT INTO connection_audits (id, at, node, transport, remote_address, outcome, error, count, last_at)
     SELECT gen_random_uuid(), now() - (g * interval '1 minute'), 'bench-node', 'http',
            '192.0.2.' || (g % 200), 'rejected_auth', 'invalid_token', 1 + g % 50,
            now() - (g * interval '1 minute') + interval '30 seconds'
       FROM generate_series(1, $1::int) g`,
    [Math.round(SESSIONS / 2)],
  );
  await db.query('ANALYZE sessions');
  await db.query('ANALYZE connection_audits');
  const counts = await db.query<{ sessions: number; audits: number }>(
    `SELECT (SELECT count(*)::int FROM sessions) AS sessions,
            (SELECT count(*)::int FROM connection_audits) AS audits`,
  );
  const [first] = counts.rows;
  if (!first) {
    throw new Error('no counts');
  }
  return first;
}

/** The node types of an EXPLAIN plan, outermost first, and the indexes it names. */
function planSummary(plan: unknown): { nodes: string[]; indexes: string[] } {
  const nodes: string[] = [];
  const indexes = new Set<string>();
  const walk = (node: Record<string, unknown>): void => {
    nodes.push(String(node['Node Type']));
    if (typeof node['Index Name'] === 'string') {
      indexes.add(node['Index Name']);
    }
    for (const child of (node.Plans as Array<Record<string, unknown>> | undefined) ?? []) {
      walk(child);
    }
  };
  walk((plan as Array<{ Plan: Record<string, unknown> }>)[0]?.Plan ?? {});
  return { nodes, indexes: [...indexes] };
}

async function main(): Promise<number> {
  const began = performance.now();
  const cleanup = new Cleanup(progress);
  cleanup.stopOnSignals();
  const failures: string[] = [];
  try {
    const root = testDir('bench-admin');
    cleanup.add('temp dir', () => rmSync(root, { recursive: true, force: true }));
    progress('starting Postgres');
    const pg = new PgProcess(join(root, 'postgres'), 0);
    cleanup.add('postgres', () => pg.stop());
    const databaseUrl = await pg.start();
    await runMigrations({ url: databaseUrl, poolMax: 2, nodeId: 'bench' });
    const db = new Pool({ connectionString: databaseUrl, max: 2 });
    cleanup.add('pool', () => db.end());

    progress(`seeding ${SESSIONS} sessions and their audits`);
    const seedStart = performance.now();
    const rows = await seed(db);
    progress(
      `seeded ${rows.sessions} sessions, ${rows.audits} audits in ${round((performance.now() - seedStart) / 1000)} s`,
    );

    const secret = randomBytes(32).toString('hex');
    const app: StartedApp = await startApp({
      NODE_ENV: 'production',
      NODE_ID: 'bench-admin',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'warn',
      DATA_DIR: join(root, 'data'),
      DATABASE_URL: databaseUrl,
      AUTH_JWT_SECRET: secret,
      HTTP_RATE_LIMIT_PER_MIN: '1000000',
      PATH: process.env.PATH,
    });
    cleanup.add('framegate', () => app.close());
    progress(`framegate listening on ${app.url}`);
    const token = hsToken({ sub: 'bench-admin', scope: 'admin', secret });
    const get = async (path: string): Promise<{ items: unknown[]; nextCursor: string | null }> => {
      const res = await fetch(`${app.url}${path}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const body = (await res.json()) as { items: unknown[]; nextCursor: string | null };
      if (res.status !== 200) {
        throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
      }
      return body;
    };

    const sessionIds = (
      await db.query<{ id: string }>(`SELECT id FROM sessions LIMIT 1000`)
    ).rows.map((r) => r.id);
    const random = lcg(7);
    const tx = (): string => `TX-${1 + Math.floor(random() * SESSIONS)}`;
    const day = 24 * 3_600_000;
    const api: Record<string, Stats> = {};
    const queries: Array<[string, (i: number) => string, (body: { items: unknown[] }) => boolean]> =
      [
        [
          'sessions: param.transactionId',
          () => `/v1/admin/sessions?param.transactionId=${tx()}`,
          (b) => b.items.length === 1,
        ],
        [
          'sessions: param.customerId + param.branch (several matches)',
          (i) => `/v1/admin/sessions?param.customerId=C-${i % 3000}&param.branch=B${i % 200}`,
          (b) => b.items.length >= 1,
        ],
        [
          'sessions: channel + day range (a page of 50)',
          (i) =>
            `/v1/admin/sessions?channel=channel-${i % CHANNELS}&from=${new Date(Date.now() - ((i % 20) + 2) * day).toISOString()}&to=${new Date(Date.now() - ((i % 20) + 1) * day).toISOString()}`,
          (b) => b.items.length >= 1,
        ],
        [
          'sessions: newest page, no filter',
          () => `/v1/admin/sessions`,
          (b) => b.items.length === 50,
        ],
        [
          'audits: subject',
          (i) => `/v1/admin/audits?subject=teller-${i % SUBJECTS}`,
          (b) => b.items.length >= 1,
        ],
        [
          'audits: remoteAddress',
          (i) =>
            `/v1/admin/audits?remoteAddress=10.0.${Math.floor((i % ADDRESSES) / 250)}.${i % 250}`,
          (b) => b.items.length >= 1,
        ],
        [
          'audits: outcome=rejected_auth',
          () => `/v1/admin/audits?outcome=rejected_auth`,
          (b) => b.items.length === 50,
        ],
        [
          'audits: closeReason=connection_lost + channel',
          (i) => `/v1/admin/audits?closeReason=connection_lost&channel=channel-${i % CHANNELS}`,
          (b) => b.items.length >= 1,
        ],
        [
          'audits: sessionId',
          () =>
            `/v1/admin/audits?sessionId=${sessionIds[Math.floor(random() * sessionIds.length)]}`,
          (b) => b.items.length === 2,
        ],
      ];
    for (const [name, path, check] of queries) {
      api[name] = await time(async (i) => {
        const body = await get(path(i));
        if (!check(body)) {
          throw new Error(`${name}: unexpected answer ${JSON.stringify(body).slice(0, 200)}`);
        }
      });
      progress(`${name}: p50 ${api[name]?.p50} ms, p95 ${api[name]?.p95} ms`);
    }

    // Walking the audits 200 at a time with the cursor: every page costs the same.
    const walk: number[] = [];
    let cursor: string | null = null;
    let walked = 0;
    do {
      const t0 = performance.now();
      const page = await get(`/v1/admin/audits?limit=200${cursor ? `&cursor=${cursor}` : ''}`);
      walk.push(performance.now() - t0);
      walked += page.items.length;
      cursor = page.nextCursor;
    } while (cursor !== null);
    api['audits: every page of 200 by cursor'] = stats(walk);
    progress(`walked ${walked} audits in ${walk.length} pages`);

    // The same lookup on Postgres itself: with the GIN index, and the baselines.
    const lookup = (key: string): { sql: string; params: unknown[] } =>
      sessionSearchSql({ params: [['transactionId', key]], limit: 50 });
    const direct = async (
      label: string,
      client: { query: Pool['query'] },
      sqlOf: () => { sql: string; params: unknown[] },
    ): Promise<Stats> => {
      const s = await time(async () => {
        const { sql, params } = sqlOf();
        const r = await client.query(sql, params);
        if (r.rowCount !== 1) {
          throw new Error(`${label}: ${r.rowCount} rows`);
        }
      });
      progress(`${label}: p50 ${s.p50} ms, p95 ${s.p95} ms`);
      return s;
    };
    const withIndex = await direct('db: param lookup with the GIN index', db, () => lookup(tx()));
    const planQuery = lookup('TX-1');
    const planWith = planSummary(
      (await db.query(`EXPLAIN (FORMAT JSON) ${planQuery.sql}`, planQuery.params)).rows[0][
        'QUERY PLAN'
      ],
    );
    const noIndex = await db.connect();
    let withoutIndex: Stats;
    let planWithout: { nodes: string[]; indexes: string[] };
    try {
      // The planner may use no index at all: what the query costs on a table without ix_sessions_params.
      await noIndex.query('SET enable_bitmapscan = off');
      await noIndex.query('SET enable_indexscan = off');
      await noIndex.query('SET enable_indexonlyscan = off');
      withoutIndex = await direct('db: the same query without indexes (seq scan)', noIndex, () =>
        lookup(tx()),
      );
      const { sql, params } = lookup('TX-1');
      planWithout = planSummary(
        (await noIndex.query(`EXPLAIN (FORMAT JSON) ${sql}`, params)).rows[0]['QUERY PLAN'],
      );
    } finally {
      // SET lasts for the connection: the pool must not hand these settings to anyone else.
      await noIndex.query('RESET ALL');
      noIndex.release();
    }
    const naive = await direct('db: naive params->>key = value', db, () => ({
      sql: `SELECT * FROM sessions WHERE params->>'transactionId' = $1 ORDER BY created_at DESC LIMIT 51`,
      params: [tx()],
    }));

    for (const [name, s] of Object.entries(api)) {
      if (s.p95 > P95_AIM_MS) {
        failures.push(`${name}: p95 ${s.p95} ms > ${P95_AIM_MS} ms`);
      }
    }
    if (!planWith.indexes.includes('ix_sessions_params')) {
      failures.push(
        `the param lookup does not use ix_sessions_params: ${planWith.nodes.join(' > ')}`,
      );
    }

    const result = {
      bench: 'admin',
      date: new Date().toISOString(),
      machine: machineInfo(),
      source: sourceState(),
      settings: {
        sessions: SESSIONS,
        requestsPerQuery: REQUESTS,
        warmup: WARMUP,
        p95AimMs: P95_AIM_MS,
      },
      rows,
      /** Over HTTP, through auth, validation and JSON: what an operator's tool sees. */
      apiMs: api,
      paramLookupMs: {
        withGinIndex: withIndex,
        baselineWithoutIndexes: withoutIndex,
        baselineNaiveTextQuery: naive,
        speedupP50: round(withoutIndex.p50 / Math.max(withIndex.p50, 0.01)),
      },
      plans: { withGinIndex: planWith, withoutIndexes: planWithout },
      failures,
      durationSeconds: round((performance.now() - began) / 1000),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return failures.length > 0 ? 1 : 0;
  } catch (err) {
    progress(`failed: ${describe(err)}`);
    return 1;
  } finally {
    progress('cleaning up');
    await cleanup.run();
  }
}

void main().then((code) => process.exit(code));
