import {
  type BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { join } from 'node:path';
import { DataSource, type EntityManager } from 'typeorm';
import { withDeadline } from '../common/deadline';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { NodeMetrics } from '../metrics/node-metrics.service';
import { AuditJournal } from './audit-journal';
import type {
  AdminActionRecord,
  AuditRecord,
  ConnectionAuditRecord,
  NodeEventRecord,
  SessionEventRecord,
} from './audit.types';
import { isRefusal, RefusalAggregator } from './refusal-aggregator';

/** Postgres' limit on bind parameters in one statement. */
const MAX_PARAMS = 65_535;
/** Records per transaction when replaying a journal file. */
const REPLAY_CHUNK = 10_000;

interface InsertShape<R> {
  into: string;
  columns: number;
  onConflict: string;
  values(record: R): unknown[];
}

const OPEN_COLUMNS =
  'id, at, node, transport, remote_address, user_agent, origin, subject, channel, outcome, error, session_id';

function openValues(r: ConnectionAuditRecord): unknown[] {
  return [
    r.id,
    r.at,
    r.node,
    r.transport,
    r.remoteAddress,
    r.userAgent,
    r.origin,
    r.subject,
    r.channel,
    r.outcome,
    r.error,
    r.sessionId,
  ];
}

const CONNECTION_OPEN: InsertShape<ConnectionAuditRecord> = {
  into: `connection_audits (${OPEN_COLUMNS})`,
  columns: 12,
  onConflict: 'ON CONFLICT (id) DO NOTHING',
  values: openValues,
};

// A close carries the whole record, so it inserts the row when its open has not landed yet.
const CONNECTION_CLOSE: InsertShape<ConnectionAuditRecord> = {
  into: `connection_audits (${OPEN_COLUMNS}, closed_at, close_code, close_reason, duration_ms, bytes_in, bytes_out, frames_in, frames_out, closed_by)`,
  columns: 21,
  onConflict: `ON CONFLICT (id) DO UPDATE SET
    closed_at = EXCLUDED.closed_at,
    close_code = EXCLUDED.close_code,
    close_reason = EXCLUDED.close_reason,
    duration_ms = EXCLUDED.duration_ms,
    bytes_in = EXCLUDED.bytes_in,
    bytes_out = EXCLUDED.bytes_out,
    frames_in = EXCLUDED.frames_in,
    frames_out = EXCLUDED.frames_out,
    closed_by = EXCLUDED.closed_by,
    session_id = COALESCE(EXCLUDED.session_id, connection_audits.session_id)`,
  values: (r) => {
    const c = r.close;
    return [
      ...openValues(r),
      c?.closedAt,
      c?.closeCode,
      c?.closeReason,
      c?.durationMs,
      c?.bytesIn,
      c?.bytesOut,
      c?.framesIn,
      c?.framesOut,
      c?.closedBy ?? null,
    ];
  },
};

// Aggregated refusals (see RefusalAggregator): each record is a snapshot with the row's whole count
// so far, so the greatest one wins and a snapshot replayed or landing late changes nothing.
const CONNECTION_REFUSAL: InsertShape<ConnectionAuditRecord> = {
  into: `connection_audits (${OPEN_COLUMNS}, count, last_at)`,
  columns: 14,
  onConflict: `ON CONFLICT (id) DO UPDATE SET
    count = GREATEST(connection_audits.count, EXCLUDED.count),
    last_at = GREATEST(connection_audits.last_at, EXCLUDED.last_at)`,
  values: (r) => [...openValues(r), r.count, r.lastAt],
};

const SESSION_EVENT: InsertShape<SessionEventRecord> = {
  into: 'session_events (id, session_id, at, type, connection_id, detail)',
  columns: 6,
  onConflict: 'ON CONFLICT (id) DO NOTHING',
  values: (r) => [r.id, r.sessionId, r.at, r.type, r.connectionId, JSON.stringify(r.detail)],
};

const NODE_EVENT: InsertShape<NodeEventRecord> = {
  into: 'node_events (id, at, node, type, detail)',
  columns: 5,
  onConflict: 'ON CONFLICT (id) DO NOTHING',
  values: (r) => [r.id, r.at, r.node, r.type, JSON.stringify(r.detail)],
};

const ADMIN_ACTION: InsertShape<AdminActionRecord> = {
  into: 'admin_actions (id, at, node, subject, action, target, detail)',
  columns: 7,
  onConflict: 'ON CONFLICT (id) DO NOTHING',
  values: (r) => [r.id, r.at, r.node, r.subject, r.action, r.target, JSON.stringify(r.detail)],
};

async function insertAll<R>(em: EntityManager, shape: InsertShape<R>, rows: R[]): Promise<void> {
  const perStatement = Math.floor(MAX_PARAMS / shape.columns);
  for (let start = 0; start < rows.length; start += perStatement) {
    const params: unknown[] = [];
    const tuples: string[] = [];
    for (const row of rows.slice(start, start + perStatement)) {
      const placeholders: string[] = [];
      for (const value of shape.values(row)) {
        params.push(value);
        placeholders.push(`$${params.length}`);
      }
      tuples.push(`(${placeholders.join(', ')})`);
    }
    await em.query(
      `INSERT INTO ${shape.into} VALUES ${tuples.join(', ')} ${shape.onConflict}`,
      params,
    );
  }
}

/** SQLSTATE classes 21-23: the data itself is refused, so retrying the same rows cannot succeed. */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[123][0-9A-Z]{3}$/.test(code);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Writes connection audits and session events to Postgres in batches, off the request path.
 * While Postgres is unreachable, batches go to a journal on disk (see AuditJournal) and are
 * replayed, in order, once it is back; every write is an idempotent upsert on the record's id, so a
 * batch replayed twice never duplicates a row.
 *
 * Refusals are aggregated per address and reason over a window before they are buffered (see
 * RefusalAggregator), so a flood of bad handshakes writes a bounded number of rows, each counted.
 */
@Injectable()
export class AuditWriter implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger(AuditWriter.name);
  private readonly journal: AuditJournal;
  private readonly refusals: RefusalAggregator;
  private buffer: AuditRecord[] = [];
  /** Records taken by the flush in progress: neither buffered nor journaled, yet not written. */
  private inFlight = 0;
  private inFlightBatch: AuditRecord[] | null = null;
  /** Buffer length at which record() spills to the journal; raised after a failed spill. */
  private spillAt: number;
  private flushScheduled = false;
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  /** Between the first failed write and the replay catching up: for the two log lines. */
  private journalInUse: boolean;
  /**
   * `stopping` after the final flush has begun: nothing schedules flushes or starts a replay.
   * `closed` once the DataSource may be gone: each record goes straight to the journal.
   */
  private phase: 'open' | 'stopping' | 'closed' = 'open';
  private flushTimer?: NodeJS.Timeout;
  private replayTimer?: NodeJS.Timeout;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: NodeMetrics,
  ) {
    this.journal = new AuditJournal(join(config.DATA_DIR, 'audit-journal'), {
      maxFileRecords: config.AUDIT_BUFFER_MAX,
    });
    this.refusals = new RefusalAggregator({
      windowMs: config.AUDIT_REFUSAL_WINDOW_MS,
      maxKeys: config.AUDIT_REFUSAL_KEYS_MAX,
    });
    this.spillAt = config.AUDIT_BUFFER_MAX;
    this.journalInUse = !this.journal.isEmpty();
  }

  onModuleInit(): void {
    // Unref'd: pending audit work must not keep a process alive; shutdown flushes explicitly.
    this.flushTimer = setInterval(() => {
      this.refusals.drain(Date.now(), this.buffer);
      if (this.buffer.length > 0) {
        void this.flushNow();
      }
    }, this.config.AUDIT_FLUSH_INTERVAL_MS).unref();
    this.replayTimer = setInterval(() => {
      if (!this.journal.isEmpty()) {
        void this.flushNow();
      }
    }, this.config.AUDIT_REPLAY_INTERVAL_MS).unref();
    if (this.journalInUse) {
      this.logger.log(`replaying ${this.journal.size} journaled audit records`);
      void this.flushNow();
    }
  }

  /**
   * The final flush; a replay in progress stops at the next file, so a backlog cannot hold it up,
   * and a database that does not answer holds it up for a quarter of the shutdown budget at most.
   */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.flushTimer);
    clearInterval(this.replayTimer);
    this.phase = 'stopping';
    const budget = Math.floor(this.config.SHUTDOWN_TIMEOUT_MS / 4);
    if ((await withDeadline(this.flushNow(), budget, 'timeout')) === 'timeout') {
      this.logger.warn(`final audit flush still waiting on Postgres after ${budget} ms`);
    }
  }

  /**
   * Nest closes the HTTP and WebSocket servers after beforeApplicationShutdown, so the last
   * connection closes are recorded after the final flush: they are journaled for the next start.
   */
  onApplicationShutdown(): void {
    this.phase = 'closed';
    // Every window ends now: counts not yet written go to the journal with the rest.
    this.refusals.drain(Infinity, this.buffer);
    // A write still waiting on Postgres may never land: its records go to the journal as well
    // (every write is an idempotent upsert, so landing twice is harmless).
    const rest = (this.inFlightBatch ?? []).concat(this.buffer);
    this.buffer = [];
    if (rest.length > 0) {
      this.logger.warn(`${rest.length} audit records journaled at shutdown for the next start`);
    }
    this.toJournal(rest);
  }

  /**
   * Queues a record for Postgres. Never throws and never waits on the database. A refusal is
   * counted into its address's row for the window and buffered only when it starts a row.
   */
  record(r: AuditRecord): void {
    if (r.kind === 'connection') {
      // Every handshake and every close of an accepted connection is audited: counted here, the
      // metrics cannot disagree with the audit trail.
      if (r.close) {
        this.metrics.closes.inc([r.transport, r.close.closeReason]);
      } else {
        this.metrics.handshakes.inc([r.transport, r.outcome]);
      }
    } else if (r.kind === 'admin_action') {
      this.metrics.adminActions.inc([r.action]);
    }
    if (this.phase === 'closed') {
      // Nothing drains the aggregator any more: the refusal is journaled as a row of its own.
      this.toJournal([r]);
      return;
    }
    if (isRefusal(r)) {
      this.refusals.add(r, this.buffer);
    } else {
      this.buffer.push(r);
    }
    if (this.buffer.length >= this.spillAt) {
      this.spill();
    } else if (
      this.buffer.length >= this.config.AUDIT_BATCH_SIZE &&
      !this.flushScheduled &&
      this.phase === 'open'
    ) {
      this.flushScheduled = true;
      setImmediate(() => void this.flushNow());
    }
  }

  /** Records not yet in Postgres: buffered plus journaled, plus aggregated counts not yet buffered. */
  backlog(): number {
    return this.buffer.length + this.inFlight + this.journal.size + this.refusals.dirty;
  }

  /** Refusals counted and the rows they were written as, since start: for /metrics. */
  refusalStats(): { refusals: number; rows: number } {
    return { refusals: this.refusals.refusals, rows: this.refusals.rows };
  }

  /**
   * Writes everything buffered and tries to replay the journal. Never rejects. Runs one at a time:
   * a call during a flush waits for a further flush that starts after the current one.
   */
  flushNow(): Promise<void> {
    if (this.running === null) {
      this.running = this.run()
        .catch((err: unknown) => this.logger.error(`audit flush failed: ${describe(err)}`))
        .finally(() => {
          this.running = null;
        });
      return this.running;
    }
    this.queued ??= this.running.then(() => {
      this.queued = null;
      return this.flushNow();
    });
    return this.queued;
  }

  private async run(): Promise<void> {
    this.refusals.drain(Date.now(), this.buffer);
    const batch = this.buffer;
    this.buffer = [];
    this.spillAt = this.config.AUDIT_BUFFER_MAX;
    this.flushScheduled = false;
    if (batch.length > 0 && this.journal.isEmpty()) {
      this.inFlight = batch.length;
      this.inFlightBatch = batch;
      try {
        await this.write(batch);
        return;
      } catch (err) {
        this.useJournal(`Postgres write failed: ${describe(err)}`);
      } finally {
        this.inFlight = 0;
        this.inFlightBatch = null;
      }
      // No replay now: it would fail the same way; the replay timer retries.
      this.toJournal(batch);
      return;
    }
    // Once anything is journaled, later batches queue behind it, so replay keeps their order.
    this.toJournal(batch);
    await this.replay();
  }

  private async replay(): Promise<void> {
    while (this.phase === 'open') {
      const name = this.journal.pending()[0] ?? this.journal.seal();
      if (name === undefined) {
        if (this.journalInUse) {
          this.journalInUse = false;
          this.logger.log('audit journal replayed; writing to Postgres directly');
        }
        return;
      }
      const { records, skipped } = await this.journal.read(name);
      try {
        for (let i = 0; i < records.length; i += REPLAY_CHUNK) {
          await this.write(records.slice(i, i + REPLAY_CHUNK));
        }
      } catch (err) {
        this.logger.debug(`audit journal replay deferred: ${describe(err)}`);
        return;
      }
      this.journal.remove(name);
      if (skipped > 0) {
        this.logger.warn(
          `skipped ${skipped} unreadable lines (torn by a crash) in audit journal ${name}`,
        );
      }
    }
  }

  /**
   * One transaction per batch. When Postgres refuses the data itself (a constraint or a bad
   * value), the records are retried one by one and the refused ones set aside in the journal's
   * rejected file: one bad record must not hold back every record after it.
   */
  private async write(records: AuditRecord[]): Promise<void> {
    try {
      await this.insert(records);
      return;
    } catch (err) {
      if (!isDataError(err)) {
        throw err;
      }
    }
    const rejected: AuditRecord[] = [];
    let cause: unknown;
    for (const record of records) {
      try {
        await this.insert([record]);
      } catch (err) {
        if (!isDataError(err)) {
          throw err;
        }
        rejected.push(record);
        cause = err;
      }
    }
    this.rejectRecords(rejected, cause);
  }

  private async insert(records: AuditRecord[]): Promise<void> {
    const opens: ConnectionAuditRecord[] = [];
    // DO UPDATE may not touch a row twice in one statement: the last close of an id wins.
    const closes = new Map<string, ConnectionAuditRecord>();
    // Likewise for a refused row: its greatest snapshot stands for the others.
    const refusals = new Map<string, ConnectionAuditRecord>();
    const events: SessionEventRecord[] = [];
    const nodeEvents: NodeEventRecord[] = [];
    const adminActions: AdminActionRecord[] = [];
    for (const r of records) {
      switch (r.kind) {
        case 'connection':
          if (r.close) {
            closes.set(r.id, r);
          } else if (r.count !== undefined) {
            if ((refusals.get(r.id)?.count ?? 0) < r.count) {
              refusals.set(r.id, r);
            }
          } else {
            opens.push(r);
          }
          break;
        case 'session_event':
          events.push(r);
          break;
        case 'node_event':
          nodeEvents.push(r);
          break;
        case 'admin_action':
          adminActions.push(r);
          break;
      }
    }
    await this.dataSource.transaction(async (em) => {
      await insertAll(em, CONNECTION_OPEN, opens);
      await insertAll(em, CONNECTION_CLOSE, [...closes.values()]);
      await insertAll(em, CONNECTION_REFUSAL, [...refusals.values()]);
      await insertAll(em, SESSION_EVENT, events);
      await insertAll(em, NODE_EVENT, nodeEvents);
      await insertAll(em, ADMIN_ACTION, adminActions);
    });
  }

  private rejectRecords(records: AuditRecord[], cause: unknown): void {
    if (records.length === 0) {
      return;
    }
    const file = this.journal.reject(records);
    this.logger.error(
      `Postgres refused ${records.length} audit records (${describe(cause)}); kept in ${file}`,
    );
  }

  /** Spills the full buffer to disk rather than growing it; synchronous, so nothing is dropped. */
  private spill(): void {
    const batch = this.buffer;
    this.buffer = [];
    if (this.toJournal(batch)) {
      this.spillAt = this.config.AUDIT_BUFFER_MAX;
      this.useJournal('audit buffer full');
    } else {
      // The disk is failing too: keep the records and retry after another batch, not per record.
      this.spillAt = this.buffer.length + this.config.AUDIT_BATCH_SIZE;
    }
  }

  /** Appends to the journal; on failure the records go back to the front of the buffer. */
  private toJournal(batch: AuditRecord[]): boolean {
    if (batch.length === 0) {
      return true;
    }
    try {
      this.journal.append(batch);
      return true;
    } catch (err) {
      this.buffer = batch.concat(this.buffer);
      this.logger.error(
        `audit journal append failed; ${batch.length} records kept in memory: ${describe(err)}`,
      );
      return false;
    }
  }

  private useJournal(reason: string): void {
    if (!this.journalInUse) {
      this.journalInUse = true;
      this.logger.warn(`audit journal in use: ${reason}`);
    }
  }
}
