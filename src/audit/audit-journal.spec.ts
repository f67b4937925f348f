import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditJournal } from './audit-journal';
import type { ConnectionAuditRecord, SessionEventRecord } from './audit.types';

function connection(close = false): ConnectionAuditRecord {
  return {
    kind: 'connection',
    id: randomUUID(),
    at: new Date('2025-01-02T03:04:05.678Z'),
    node: 'node-a',
    transport: 'ws',
    remoteAddress: '10.0.0.1',
    userAgent: 'jest',
    origin: null,
    subject: 'user-1',
    channel: 'cam-1',
    outcome: 'accepted',
    error: null,
    sessionId: randomUUID(),
    close: close
      ? {
          closedAt: new Date('2025-01-02T03:05:05.678Z'),
          closeCode: 1000,
          closeReason: 'bye',
          durationMs: 60_000,
          bytesIn: 1234,
          bytesOut: 56,
          framesIn: 30,
          framesOut: 0,
        }
      : undefined,
  };
}

function sessionEvent(): SessionEventRecord {
  return {
    kind: 'session_event',
    id: randomUUID(),
    sessionId: randomUUID(),
    at: new Date('2025-01-02T03:04:06.000Z'),
    type: 'attach',
    connectionId: null,
    // A date-like string in detail must come back as a string.
    detail: { note: '2025-01-02T03:04:06.000Z' },
  };
}

describe('AuditJournal', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-journal-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads back appended records with their Dates revived', async () => {
    const journal = new AuditJournal(dir, { maxFileRecords: 100 });
    const records = [connection(), connection(true), sessionEvent()];
    journal.append(records);
    expect(journal.size).toBe(3);

    const name = journal.seal();
    expect(name).toBeDefined();
    const { records: read, skipped } = await journal.read(name!);

    expect(skipped).toBe(0);
    expect(read).toEqual(records);
    const closed = read[1] as ConnectionAuditRecord;
    expect(closed.at).toBeInstanceOf(Date);
    expect(closed.close?.closedAt).toBeInstanceOf(Date);
    expect((read[2] as SessionEventRecord).detail.note).toBe('2025-01-02T03:04:06.000Z');

    journal.remove(name!);
    expect(journal.size).toBe(0);
    expect(journal.isEmpty()).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('skips a torn last line and never returns it as a record', async () => {
    const first = new AuditJournal(dir, { maxFileRecords: 100 });
    const whole = [connection(), sessionEvent()];
    first.append(whole);
    // A crash mid-append leaves half a line with no newline.
    appendFileSync(join(dir, 'current.jsonl'), JSON.stringify(connection()).slice(0, 40));

    // The next process seals the leftover file before appending anything after the fragment.
    const second = new AuditJournal(dir, { maxFileRecords: 100 });
    expect(second.size).toBe(2);
    second.append([sessionEvent()]);
    const [leftover] = second.pending();
    const { records, skipped } = await second.read(leftover);

    expect(skipped).toBe(1);
    expect(records).toEqual(whole);
  });

  it('sends appends to a fresh file once the current one is sealed for replay', async () => {
    const journal = new AuditJournal(dir, { maxFileRecords: 100 });
    const before = connection();
    const after = connection(true);
    journal.append([before]);
    const sealed = journal.seal()!;
    journal.append([after]);
    const next = journal.seal()!;

    expect(journal.pending()).toEqual([sealed, next]);
    expect((await journal.read(sealed)).records).toEqual([before]);
    expect((await journal.read(next)).records).toEqual([after]);
    expect(journal.size).toBe(2);
  });

  it('seals the current file when it reaches maxFileRecords', () => {
    const journal = new AuditJournal(dir, { maxFileRecords: 2 });
    journal.append([connection(), connection()]);
    journal.append([sessionEvent()]);

    expect(journal.pending()).toHaveLength(1);
    expect(journal.isEmpty()).toBe(false);
    expect(journal.size).toBe(3);
  });
});
