import type { AuditRecord, ConnectionAuditRecord } from './audit.types';

export interface RefusalAggregatorOptions {
  /** A key's row covers the refusals from its first one until this many ms later. */
  windowMs: number;
  /** Distinct addresses (keys) held at once; further ones fold into their reason's overflow row. */
  maxKeys: number;
}

interface RefusalWindow {
  /** The row as first written; snapshots copy it with the current count. */
  row: ConnectionAuditRecord;
  startMs: number;
  lastAt: Date;
  count: number;
  /** The count in the last record handed to the writer. */
  written: number;
}

/** A refusal with nothing after it: no session bound, no close to record later. */
export function isRefusal(r: AuditRecord): r is ConnectionAuditRecord {
  return (
    r.kind === 'connection' &&
    r.outcome !== 'accepted' &&
    r.sessionId === null &&
    r.close === undefined &&
    // A record that already carries a count is a snapshot (replayed, or written by a test).
    r.count === undefined
  );
}

const SEP = '\u0000';

/**
 * Folds repeated refusals into one row per (transport, outcome, error, address, subject, channel)
 * and window, so a flood of bad tokens writes a bounded number of rows however fast it comes.
 *
 * The first refusal of a key in a window is handed to the writer at once as a row with count 1;
 * later ones only raise the in-memory count, and `drain` hands over a snapshot of the row with the
 * whole count so far. Snapshots carry absolute counts, never increments, so writing one twice (a
 * journal replayed after a crash) or out of order cannot change the sum: the writer keeps the
 * greatest count per row.
 *
 * At most `maxKeys` addresses are held; a refusal from one more address is counted in an
 * overflow row per (transport, outcome, error) with every identifying column null. There are a
 * handful of those keys (the error codes are a closed set), so memory stays bounded too.
 */
export class RefusalAggregator {
  private readonly windows = new Map<string, RefusalWindow>();
  private dirtyWindows = 0;
  private refusalsSeen = 0;
  private rowsStarted = 0;

  constructor(private readonly options: RefusalAggregatorOptions) {}

  /** Refusals counted since start. */
  get refusals(): number {
    return this.refusalsSeen;
  }

  /** Rows started since start: refusals / rows is the aggregation factor. */
  get rows(): number {
    return this.rowsStarted;
  }

  /** Keys held, overflow keys included. */
  get size(): number {
    return this.windows.size;
  }

  /** Rows whose latest count has not been handed to the writer yet. */
  get dirty(): number {
    return this.dirtyWindows;
  }

  /** Counts a refusal; pushes onto `out` the records to write now (a new row, a closed window). */
  add(r: ConnectionAuditRecord, out: AuditRecord[]): void {
    this.refusalsSeen++;
    const atMs = r.at.getTime();
    let key = keyOf(r);
    let w = this.windows.get(key);
    let overflow = false;
    if (w === undefined && this.windows.size >= this.options.maxKeys) {
      overflow = true;
      key = overflowKeyOf(r);
      w = this.windows.get(key);
    }
    if (w !== undefined && atMs - w.startMs >= this.options.windowMs) {
      this.close(key, w, out);
      w = undefined;
    }
    if (w === undefined) {
      const row: ConnectionAuditRecord = overflow
        ? {
            ...r,
            remoteAddress: null,
            userAgent: null,
            origin: null,
            subject: null,
            channel: null,
            count: 1,
            lastAt: r.at,
          }
        : { ...r, count: 1, lastAt: r.at };
      this.windows.set(key, { row, startMs: atMs, lastAt: r.at, count: 1, written: 1 });
      this.rowsStarted++;
      out.push(row);
      return;
    }
    if (w.count === w.written) {
      this.dirtyWindows++;
    }
    w.count++;
    if (atMs > w.lastAt.getTime()) {
      w.lastAt = r.at;
    }
  }

  /**
   * Pushes a snapshot of every row whose count grew since the last drain, and forgets windows
   * that ended by `nowMs` (Infinity at shutdown), freeing their keys.
   */
  drain(nowMs: number, out: AuditRecord[]): void {
    for (const [key, w] of this.windows) {
      if (nowMs - w.startMs >= this.options.windowMs) {
        this.close(key, w, out);
      } else if (w.count > w.written) {
        this.snapshot(w, out);
      }
    }
  }

  private close(key: string, w: RefusalWindow, out: AuditRecord[]): void {
    if (w.count > w.written) {
      this.snapshot(w, out);
    }
    this.windows.delete(key);
  }

  private snapshot(w: RefusalWindow, out: AuditRecord[]): void {
    out.push({ ...w.row, count: w.count, lastAt: w.lastAt });
    w.written = w.count;
    this.dirtyWindows--;
  }
}

function keyOf(r: ConnectionAuditRecord): string {
  return [
    'address',
    r.transport,
    r.outcome,
    r.error ?? '',
    r.remoteAddress ?? '',
    r.subject ?? '',
    r.channel ?? '',
  ].join(SEP);
}

/** Its first field tells it from an address key whatever the other fields hold. */
function overflowKeyOf(r: ConnectionAuditRecord): string {
  return ['overflow', r.transport, r.outcome, r.error ?? ''].join(SEP);
}
