import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditJournal } from './audit-journal';
import type { AuditOutcome, AuditRecord, ConnectionAuditRecord } from './audit.types';
import { isRefusal, RefusalAggregator } from './refusal-aggregator';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');

function refusal(
  atMs: number,
  remoteAddress: string | null = '203.0.113.9',
  outcome: AuditOutcome = 'rejected_auth',
  error = 'invalid_token',
): ConnectionAuditRecord {
  return {
    kind: 'connection',
    id: randomUUID(),
    at: new Date(atMs),
    node: 'node-a',
    transport: 'http',
    remoteAddress,
    userAgent: 'curl/8',
    origin: null,
    subject: null,
    channel: null,
    outcome,
    error,
    sessionId: null,
  };
}

/** What Postgres ends up with: per row id the greatest count, as the writer's upsert keeps. */
function rowsOf(records: AuditRecord[]): Map<string, ConnectionAuditRecord> {
  const rows = new Map<string, ConnectionAuditRecord>();
  for (const r of records) {
    if (r.kind === 'connection' && (rows.get(r.id)?.count ?? 0) < (r.count ?? 1)) {
      rows.set(r.id, r);
    }
  }
  return rows;
}

function sum(rows: Map<string, ConnectionAuditRecord>): number {
  let n = 0;
  for (const r of rows.values()) {
    n += r.count ?? 1;
  }
  return n;
}

describe('RefusalAggregator', () => {
  it('writes the first refusal of a key at once, with count 1', () => {
    const agg = new RefusalAggregator({ windowMs: 60_000, maxKeys: 10 });
    const out: AuditRecord[] = [];
    const first = refusal(T0);
    agg.add(first, out);
    expect(out).toEqual([{ ...first, count: 1, lastAt: first.at }]);
    expect(agg.dirty).toBe(0);
  });

  it('counts later refusals of the key into one row whose counts sum exactly', () => {
    const agg = new RefusalAggregator({ windowMs: 60_000, maxKeys: 10 });
    const out: AuditRecord[] = [];
    for (let i = 0; i < 1000; i++) {
      agg.add(refusal(T0 + i), out);
    }
    expect(out).toHaveLength(1);
    expect(agg.dirty).toBe(1);
    agg.drain(T0 + 1000, out);
    expect(out).toHaveLength(2);
    expect(agg.dirty).toBe(0);
    const rows = rowsOf(out);
    expect(rows.size).toBe(1);
    expect(sum(rows)).toBe(1000);
    expect([...rows.values()][0]?.lastAt).toEqual(new Date(T0 + 999));
    expect(agg.refusals).toBe(1000);
    expect(agg.rows).toBe(1);
  });

  it('drains nothing for a row whose count has not changed', () => {
    const agg = new RefusalAggregator({ windowMs: 60_000, maxKeys: 10 });
    const out: AuditRecord[] = [];
    agg.add(refusal(T0), out);
    agg.add(refusal(T0 + 1), out);
    agg.drain(T0 + 2, out);
    const written = out.length;
    agg.drain(T0 + 3, out);
    expect(out).toHaveLength(written);
  });

  it('keeps addresses, outcomes and error codes apart', () => {
    const agg = new RefusalAggregator({ windowMs: 60_000, maxKeys: 10 });
    const out: AuditRecord[] = [];
    agg.add(refusal(T0, '203.0.113.1'), out);
    agg.add(refusal(T0, '203.0.113.2'), out);
    agg.add(refusal(T0, '203.0.113.1', 'rejected_origin', 'origin_not_allowed'), out);
    agg.add(refusal(T0, '203.0.113.1', 'rejected_auth', 'token_expired'), out);
    agg.add(refusal(T0, '203.0.113.1'), out);
    agg.drain(T0 + 1, out);
    const rows = rowsOf(out);
    expect(rows.size).toBe(4);
    expect(sum(rows)).toBe(5);
  });

  it('starts a new row when the window rolls, and the closed row keeps its full count', () => {
    const agg = new RefusalAggregator({ windowMs: 1000, maxKeys: 10 });
    const out: AuditRecord[] = [];
    for (let i = 0; i < 25; i++) {
      agg.add(refusal(T0 + i * 100), out);
    }
    agg.drain(T0 + 2400, out);
    const rows = [...rowsOf(out).values()].sort((a, b) => a.at.getTime() - b.at.getTime());
    expect(rows.map((r) => r.count)).toEqual([10, 10, 5]);
    expect(rows.map((r) => r.at.getTime() - T0)).toEqual([0, 1000, 2000]);
    expect(rows.map((r) => (r.lastAt?.getTime() ?? 0) - T0)).toEqual([900, 1900, 2400]);
  });

  it('forgets windows that ended, freeing their keys', () => {
    const agg = new RefusalAggregator({ windowMs: 1000, maxKeys: 10 });
    const out: AuditRecord[] = [];
    agg.add(refusal(T0, '203.0.113.1'), out);
    agg.add(refusal(T0, '203.0.113.1'), out);
    agg.add(refusal(T0 + 500, '203.0.113.2'), out);
    agg.drain(T0 + 1000, out);
    expect(agg.size).toBe(1);
    expect(sum(rowsOf(out))).toBe(3);
    agg.drain(T0 + 1500, out);
    expect(agg.size).toBe(0);
  });

  it('folds addresses beyond the key bound into an overflow row per reason, still counted', () => {
    const agg = new RefusalAggregator({ windowMs: 60_000, maxKeys: 3 });
    const out: AuditRecord[] = [];
    for (let i = 0; i < 10; i++) {
      agg.add(refusal(T0 + i, `198.51.100.${i}`), out);
      agg.add(refusal(T0 + i, `198.51.100.${i}`, 'rejected_origin', 'origin_not_allowed'), out);
    }
    agg.drain(T0 + 10, out);
    expect(agg.size).toBe(5);
    const rows = [...rowsOf(out).values()];
    const overflow = rows.filter((r) => r.remoteAddress === null);
    expect(overflow.map((r) => [r.outcome, r.count]).sort()).toEqual([
      ['rejected_auth', 8],
      ['rejected_origin', 9],
    ]);
    expect(overflow.every((r) => r.userAgent === null && r.subject === null)).toBe(true);
    expect(rows).toHaveLength(5);
    expect(sum(rowsOf(out))).toBe(20);
  });

  it('hands the writer a bounded number of records under a flood from many addresses', () => {
    const maxKeys = 100;
    const agg = new RefusalAggregator({ windowMs: 60_000, maxKeys });
    const out: AuditRecord[] = [];
    const flushes = 20;
    const refusals = 100_000;
    for (let i = 0; i < refusals; i++) {
      agg.add(refusal(T0 + i / 10, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`), out);
      if (i % (refusals / flushes) === 0) {
        agg.drain(T0 + i / 10, out);
      }
    }
    agg.drain(T0 + refusals / 10, out);
    // One row per held key plus the overflow row, and at most one snapshot of each per flush.
    expect(rowsOf(out).size).toBe(maxKeys + 1);
    expect(out.length).toBeLessThanOrEqual((maxKeys + 1) * (flushes + 2));
    expect(sum(rowsOf(out))).toBe(refusals);
    expect(agg.refusals).toBe(refusals);
    expect(agg.rows).toBe(maxKeys + 1);
  });

  it('closes every window when drained at Infinity (shutdown)', () => {
    const agg = new RefusalAggregator({ windowMs: 60_000, maxKeys: 10 });
    const out: AuditRecord[] = [];
    agg.add(refusal(T0, '203.0.113.1'), out);
    agg.add(refusal(T0, '203.0.113.1'), out);
    agg.drain(Infinity, out);
    expect(agg.size).toBe(0);
    expect(agg.dirty).toBe(0);
    expect(sum(rowsOf(out))).toBe(2);
  });

  it('aggregates only refusals with nothing after them', () => {
    const r = refusal(T0);
    expect(isRefusal(r)).toBe(true);
    expect(isRefusal({ ...r, outcome: 'accepted', error: null })).toBe(false);
    expect(isRefusal({ ...r, sessionId: randomUUID() })).toBe(false);
    expect(isRefusal({ ...r, count: 3, lastAt: r.at })).toBe(false);
  });

  it('keeps counts and last_at through the journal', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'refusal-journal-'));
    try {
      const journal = new AuditJournal(dir, { maxFileRecords: 100 });
      const agg = new RefusalAggregator({ windowMs: 60_000, maxKeys: 10 });
      const out: AuditRecord[] = [];
      for (let i = 0; i < 7; i++) {
        agg.add(refusal(T0 + i), out);
      }
      agg.drain(T0 + 7, out);
      journal.append(out);
      const name = journal.seal();
      expect(name).toBeDefined();
      const { records } = await journal.read(name ?? '');
      const rows = rowsOf(records);
      expect(sum(rows)).toBe(7);
      expect([...rows.values()][0]?.lastAt).toEqual(new Date(T0 + 6));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
