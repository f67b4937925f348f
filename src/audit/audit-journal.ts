import {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AuditRecord } from './audit.types';

const CURRENT = 'current.jsonl';
const REJECTED = 'rejected.jsonl';
const REPLAY_NAME = /^replay-(\d{13})-(\d{6})\.jsonl$/;

export interface AuditJournalOptions {
  /** A current file holding this many records is sealed, so no single replay reads more. */
  maxFileRecords: number;
}

export interface JournalContents {
  records: AuditRecord[];
  /** Lines that did not parse as a record: a torn tail after a crash mid-append. */
  skipped: number;
}

/**
 * Audit records that have not reached Postgres, as JSON lines under one directory. New records
 * are appended to `current.jsonl`; a replay first seals it by renaming it to
 * `replay-<ms>-<seq>.jsonl`, so appends carry on into a fresh file while the sealed one is read,
 * and sealed files sort oldest first by name. Records Postgres refused as invalid go to
 * `rejected.jsonl`, kept for an operator and never replayed.
 *
 * Appends are synchronous and fdatasync'd: they happen only when the database is unreachable or
 * the buffer is full, and keeping them synchronous means two appends can never interleave.
 * The directory belongs to one process (DATA_DIR is locked), so record counts live in memory.
 */
export class AuditJournal {
  /** Sealed files and the number of complete lines in each. */
  private readonly sealed = new Map<string, number>();
  private currentLines = 0;
  private total = 0;
  private lastMs = 0;
  private seq = 0;

  constructor(
    readonly dir: string,
    private readonly options: AuditJournalOptions,
  ) {
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(dir)) {
      const match = REPLAY_NAME.exec(name);
      if (match) {
        this.lastMs = Math.max(this.lastMs, Number(match[1]));
        this.track(name, countLines(readFileSync(join(dir, name))));
      }
    }
    // A current file left by a previous process may end in a torn line; appending after it
    // would glue the next record onto the fragment, so it is sealed before anything is added.
    let leftover: Buffer | undefined;
    try {
      leftover = readFileSync(join(dir, CURRENT));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw err;
      }
    }
    if (leftover) {
      this.track(this.rename(CURRENT), countLines(leftover));
    }
  }

  /** Records journaled and not yet removed (complete lines, torn ones excluded). */
  get size(): number {
    return this.total;
  }

  isEmpty(): boolean {
    return this.sealed.size === 0 && this.currentLines === 0;
  }

  /** Sealed files awaiting replay, oldest first. */
  pending(): string[] {
    return [...this.sealed.keys()].sort();
  }

  /** Appends records to the current file and waits until they are on disk. */
  append(records: readonly AuditRecord[]): void {
    if (records.length === 0) {
      return;
    }
    if (this.currentLines >= this.options.maxFileRecords) {
      this.seal();
    }
    const created = this.currentLines === 0;
    try {
      writeDurably(join(this.dir, CURRENT), toLines(records));
    } catch (err) {
      // A partial write may have left a torn line: seal it so later appends start clean.
      this.seal();
      throw err;
    }
    if (created) {
      // fdatasync covers the file's data, not the directory entry that names it.
      fsyncDir(this.dir);
    }
    this.currentLines += records.length;
    this.total += records.length;
  }

  /**
   * Renames the current file for replay and returns its name; undefined when there is nothing
   * to seal. New appends go to a fresh current file.
   */
  seal(): string | undefined {
    if (this.currentLines === 0) {
      return undefined;
    }
    const name = this.rename(CURRENT);
    this.sealed.set(name, this.currentLines);
    this.currentLines = 0;
    return name;
  }

  /** Reads a sealed file, reviving Dates and skipping lines that do not parse. */
  async read(name: string): Promise<JournalContents> {
    let text: string;
    try {
      text = await readFile(join(this.dir, name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return { records: [], skipped: 0 };
      }
      throw err;
    }
    const lines = text.split('\n');
    // The element after the last newline is empty, or the tail of an append cut short.
    const skippedTail = lines.pop() === '' ? 0 : 1;
    const records: AuditRecord[] = [];
    let skipped = skippedTail;
    for (const line of lines) {
      const record = parseRecord(line);
      if (record) {
        records.push(record);
      } else {
        skipped++;
      }
    }
    return { records, skipped };
  }

  /** Deletes a sealed file once its records are in Postgres. */
  remove(name: string): void {
    try {
      unlinkSync(join(this.dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw err;
      }
    }
    this.total -= this.sealed.get(name) ?? 0;
    this.sealed.delete(name);
  }

  /** Keeps records Postgres refused, so they are neither lost nor retried forever. */
  reject(records: readonly AuditRecord[]): string {
    writeDurably(join(this.dir, REJECTED), toLines(records));
    return join(this.dir, REJECTED);
  }

  private track(name: string, lines: number): void {
    this.sealed.set(name, lines);
    this.total += lines;
  }

  private rename(from: string): string {
    // Names must sort in sealing order even if the clock steps back or two seals share a ms.
    const ms = Math.max(Date.now(), this.lastMs);
    this.seq = ms === this.lastMs ? this.seq + 1 : 0;
    this.lastMs = ms;
    const name = `replay-${String(ms).padStart(13, '0')}-${String(this.seq).padStart(6, '0')}.jsonl`;
    renameSync(join(this.dir, from), join(this.dir, name));
    return name;
  }
}

function toLines(records: readonly AuditRecord[]): string {
  let out = '';
  for (const record of records) {
    out += `${JSON.stringify(record)}\n`;
  }
  return out;
}

function writeDurably(file: string, data: string): void {
  const fd = openSync(file, 'a');
  try {
    writeFileSync(fd, data);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function countLines(data: Buffer): number {
  let n = 0;
  for (let i = data.indexOf(10); i !== -1; i = data.indexOf(10, i + 1)) {
    n++;
  }
  return n;
}

/** Dates are revived by field, not by shape, so strings inside `detail` stay strings. */
function parseRecord(line: string): AuditRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) {
    return undefined;
  }
  const record = value as AuditRecord;
  if (typeof record.id !== 'string') {
    return undefined;
  }
  switch (record.kind) {
    case 'connection':
      record.at = new Date(record.at);
      if (record.lastAt !== undefined) {
        record.lastAt = new Date(record.lastAt);
      }
      if (record.close) {
        record.close.closedAt = new Date(record.close.closedAt);
      }
      return record;
    case 'session_event':
    case 'node_event':
    case 'admin_action':
      record.at = new Date(record.at);
      return record;
    default:
      return undefined;
  }
}
