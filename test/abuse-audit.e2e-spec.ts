import { startTestApp, type TestApp } from './support/app';
import { besideCanary } from './support/canary';
import { waitFor } from './support/wait';

const FLOOD = 1000;
const ADDRESSES = 60;

/**
 * One bad-token REST request; its status, or 0 when it failed at the socket. It always settles:
 * fetch rejects on a reset or closed socket, and the signal ends a request that hangs.
 */
async function badTokenRequest(
  base: string,
  headers: Record<string, string> = {},
): Promise<number> {
  try {
    const res = await fetch(`${base}/v1/tickets`, {
      method: 'POST',
      headers: { authorization: 'Bearer not-a-token', ...headers },
      signal: AbortSignal.timeout(10_000),
    });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** Runs `jobs` with at most `width` at once; their results in order. */
async function pooled<T>(jobs: Array<() => Promise<T>>, width: number): Promise<T[]> {
  const results: T[] = new Array<T>(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const i = next++;
        results[i] = await jobs[i]();
      }
    }),
  );
  return results;
}

describe('audit amplification over REST', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp({
      env: {
        ACK_INTERVAL_MS: '500',
        TRUST_PROXY: 'loopback',
        // Fewer addresses than the attack uses: the rest must be counted in the overflow row.
        AUDIT_REFUSAL_KEYS_MAX: '20',
      },
    });
  });
  afterAll(() => app.close());

  it('folds 1000 bad-token requests and a crowd of addresses into a handful of rows that count every refusal', async () => {
    const { refused, limited } = await besideCanary(app, async () => {
      const flood = await pooled(
        Array.from({ length: FLOOD }, () => () => badTokenRequest(app.url)),
        20,
      );
      const crowd = await pooled(
        Array.from(
          { length: ADDRESSES * 2 },
          (_, i) => () =>
            badTokenRequest(app.url, { 'x-forwarded-for': `10.9.${i % ADDRESSES}.1` }),
        ),
        20,
      );
      const statuses = [...flood, ...crowd];
      // The crowd's addresses each stay far under their refused budget.
      expect(crowd.every((s) => s === 401)).toBe(true);
      // The flood from one address is cut short by its refused budget.
      expect(flood.filter((s) => s === 429).length).toBeGreaterThan(FLOOD / 2);
      expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
      return {
        refused: statuses.filter((s) => s === 401).length,
        limited: statuses.filter((s) => s === 429).length,
      };
    });

    const sums = async () =>
      (
        await app.db.query<{ outcome: string; error: string; rows: number; n: number }>(
          `SELECT outcome, error, COUNT(*)::int AS rows, SUM(count)::int AS n
             FROM connection_audits WHERE transport = 'http'
            GROUP BY outcome, error ORDER BY outcome`,
        )
      ).rows;
    await waitFor(
      async () => {
        const s = await sums();
        return (
          s.find((r) => r.outcome === 'rejected_auth')?.n === refused &&
          s.find((r) => r.outcome === 'rejected_quota')?.n === limited
        );
      },
      15_000,
      'every refusal counted in the audit',
    );
    const rows = await sums();
    expect(rows).toEqual([
      { outcome: 'rejected_auth', error: 'invalid_token', rows: expect.any(Number), n: refused },
      { outcome: 'rejected_quota', error: 'rate_limited', rows: expect.any(Number), n: limited },
    ]);
    // 1 060 refusals and 429s: the flood's address has a row per reason (per window), the crowd
    // up to the key limit one each, and the rest share an overflow row.
    const total = rows.reduce((sum, r) => sum + r.rows, 0);
    expect(total).toBeLessThanOrEqual(20 + 4);
    const overflow = await app.db.query<{ n: number }>(
      `SELECT SUM(count)::int AS n FROM connection_audits
        WHERE transport = 'http' AND remote_address IS NULL`,
    );
    expect(overflow.rows[0].n).toBeGreaterThan(0);
  });
});
