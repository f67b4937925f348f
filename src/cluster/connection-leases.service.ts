import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { Membership, nodeAliveSql } from './membership.service';

/**
 * The first key of the two-key advisory locks taken per channel at admission (the second is the
 * channel name's hashtext). Two-key locks live in another key space than the one-key locks of
 * the admin API and the migrations, so they cannot collide with them.
 */
const ADMISSION_LOCK_CLASS = 0x6667_0001;

/**
 * "Lease `l` counts", with `n` its node's row and $1 NODE_DEAD_AFTER_MS: the node is alive and
 * still runs the instance that wrote the lease (a restarted node's old leases stop counting).
 */
const VALID = `(n.instance = l.instance AND ${nodeAliveSql('n', '$1')})`;

/** What a lease says about a live connection. */
export interface LeaseInfo {
  id: string;
  channel: string;
  subject: string;
  remoteAddress: string | null;
  since: Date;
}

/** A lease as the cluster sees it. */
export interface LeaseView extends LeaseInfo {
  node: string;
  sessionId: string | null;
  /** Its node's instance is alive: the lease counts against the channel. */
  valid: boolean;
}

interface LeaseRow {
  id: string;
  node: string;
  channel: string;
  subject: string;
  session_id: string | null;
  remote_address: string | null;
  since: Date;
  valid: boolean;
}

/**
 * Connection leases (issue 15): every live WebSocket connection of the cluster holds a row in
 * `connection_leases`, valid while the instance of its node is alive in `nodes`. A lease is not
 * renewed row by row: the node's heartbeat renews all of them in one statement, and once the
 * heartbeat lapses (kill -9, partition) they all stop counting at the same moment.
 *
 * Admission is one transaction per handshake: a lock on the channel, then an insert that counts
 * the channel's valid leases in the same statement, so N concurrent handshakes over any number of
 * nodes cannot let the N+1st in (the lock orders them; each one's count sees the commits before
 * it, as READ COMMITTED takes a new snapshot per statement).
 *
 * Cleanup: the connection's release deletes its row; a delete that failed (database down) is
 * retried by the sweep, which also deletes the rows of dead nodes and of previous instances of
 * any node. A node whose own heartbeat lapsed may have lost its rows to another node's sweep;
 * it writes them again once it renews.
 */
@Injectable()
export class ConnectionLeases implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(ConnectionLeases.name);
  /** This instance's leases, inserted or being inserted, for the rewrite after a lapse. */
  private readonly held = new Map<string, LeaseInfo & { sessionId: string | null }>();
  /** Leases released here whose delete failed: the sweep deletes them. */
  private readonly unreleased = new Set<string>();
  /** Deletes and updates under way, for settled(). */
  private readonly writes = new Set<Promise<void>>();
  private rewrite = false;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | null = null;
  private failing = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectDataSource() private readonly db: DataSource,
    private readonly membership: Membership,
  ) {
    membership.onLapse(() => {
      this.rewrite = true;
    });
  }

  onApplicationBootstrap(): void {
    // Half the dead-after time: a dead node's rows are gone within 1.5 × NODE_DEAD_AFTER_MS.
    this.timer = setInterval(() => void this.sweep(), this.config.NODE_DEAD_AFTER_MS / 2);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all([this.sweeping, this.settled()]);
  }

  /** Resolves once the releases and session updates issued so far are written (or failed). */
  async settled(): Promise<void> {
    await Promise.all([...this.writes]);
  }

  /** Leases this instance holds. */
  get size(): number {
    return this.held.size;
  }

  /**
   * Inserts the lease if the channel has fewer than `limit` valid leases across the cluster;
   * false when it is full. Rejects when the database cannot answer (nothing is held then).
   */
  async acquire(lease: LeaseInfo, limit: number): Promise<boolean> {
    this.held.set(lease.id, { ...lease, sessionId: null });
    try {
      const inserted = await this.db.transaction(async (em) => {
        await em.query(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, [
          ADMISSION_LOCK_CLASS,
          lease.channel,
        ]);
        const rows = await em.query<Array<{ id: string }>>(
          `INSERT INTO connection_leases
             (id, node, instance, channel, subject, session_id, remote_address, since)
           SELECT $1, $2, $3, $4, $5, NULL, $6, $7
            WHERE (SELECT count(*) FROM connection_leases l
                     JOIN nodes n ON n.id = l.node AND n.instance = l.instance
                    WHERE l.channel = $4 AND ${nodeAliveSql('n', '$9')}) < $8
           RETURNING id`,
          [
            lease.id,
            this.config.NODE_ID,
            this.membership.instance,
            lease.channel,
            lease.subject,
            lease.remoteAddress,
            lease.since.toISOString(),
            limit,
            this.config.NODE_DEAD_AFTER_MS,
          ],
        );
        return rows.length === 1;
      });
      if (!inserted) {
        this.held.delete(lease.id);
      }
      // A retry after a failed attempt: that one did not commit (this insert would have hit its
      // primary key), so the sweep must not delete this lease.
      this.unreleased.delete(lease.id);
      return inserted;
    } catch (err) {
      // The commit may have happened before the error: the sweep deletes the row if it exists.
      this.held.delete(lease.id);
      this.unreleased.add(lease.id);
      throw err;
    }
  }

  /** Deletes a lease (once per connection: ConnectionSlot.release is the only caller). */
  release(id: string): void {
    if (!this.held.delete(id)) {
      return;
    }
    this.track(
      this.db.query(`DELETE FROM connection_leases WHERE id = $1`, [id]).then(
        () => undefined,
        (err: unknown) => {
          this.unreleased.add(id);
          this.warnOnce(err, 'lease not deleted; the sweep retries');
        },
      ),
    );
  }

  /** Records the session a connection carries, so that pushes and disconnects can find it. */
  bindSession(id: string, sessionId: string): void {
    const lease = this.held.get(id);
    if (!lease) {
      return;
    }
    lease.sessionId = sessionId;
    this.track(
      this.db
        .query(`UPDATE connection_leases SET session_id = $2 WHERE id = $1`, [id, sessionId])
        .then(
          () => undefined,
          (err: unknown) => this.warnOnce(err, 'lease session not recorded'),
        ),
    );
  }

  private track(write: Promise<void>): void {
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
  }

  /** One lease by connection id, valid or not (null: none). */
  async find(id: string): Promise<LeaseView | null> {
    const rows = await this.select(`l.id = $2`, [id], 'ASC');
    return rows[0] ?? null;
  }

  /** The newest valid lease carrying the session (null: no live connection carries it). */
  async findBySession(sessionId: string): Promise<LeaseView | null> {
    const rows = await this.select(`l.session_id = $2 AND ${VALID}`, [sessionId], 'DESC');
    return rows[0] ?? null;
  }

  /** Valid leases, oldest first; of one node when `node` is given. */
  async list(node?: string): Promise<LeaseView[]> {
    return node === undefined
      ? this.select(VALID, [], 'ASC')
      : this.select(`l.node = $2 AND ${VALID}`, [node], 'ASC');
  }

  /** Valid leases per channel across the cluster (channels with none are omitted). */
  async channelCounts(): Promise<Record<string, number>> {
    const rows = await this.db.query<Array<{ channel: string; n: number }>>(
      `SELECT l.channel, count(*)::int AS n FROM connection_leases l
         JOIN nodes n ON n.id = l.node AND n.instance = l.instance
        WHERE ${VALID}
        GROUP BY l.channel`,
      [this.config.NODE_DEAD_AFTER_MS],
    );
    return Object.fromEntries(rows.map((r) => [r.channel, r.n]));
  }

  /** Valid leases of one channel. */
  async channelCount(channel: string): Promise<number> {
    const rows = await this.db.query<Array<{ n: number }>>(
      `SELECT count(*)::int AS n FROM connection_leases l
         JOIN nodes n ON n.id = l.node AND n.instance = l.instance
        WHERE l.channel = $2 AND ${VALID}`,
      [this.config.NODE_DEAD_AFTER_MS, channel],
    );
    return rows[0]?.n ?? 0;
  }

  /** Runs one sweep now (also for tests); concurrent calls share it. Never rejects. */
  sweep(): Promise<void> {
    this.sweeping ??= this.sweepOnce().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    const retried = [...this.unreleased];
    try {
      if (this.rewrite && this.membership.healthy) {
        await this.rewriteHeld();
        this.rewrite = false;
      }
      // A lease is stale once its node is dead or runs another instance (restarted).
      await this.db.query(
        `DELETE FROM connection_leases l USING nodes n
          WHERE n.id = l.node
            AND (n.instance <> l.instance OR NOT ${nodeAliveSql('n', '$1')} OR l.id = ANY($2::uuid[]))`,
        [this.config.NODE_DEAD_AFTER_MS, retried],
      );
      for (const id of retried) {
        this.unreleased.delete(id);
      }
      await this.db.query(
        `DELETE FROM throttle_counters
          WHERE window_ends_at < now() AND (blocked_until IS NULL OR blocked_until < now())`,
      );
      if (this.failing) {
        this.failing = false;
        this.logger.log('connection leases swept again');
      }
    } catch (err) {
      this.warnOnce(err, 'lease sweep failed; retrying');
    }
  }

  /**
   * After this node's heartbeat lapsed, another node's sweep may have deleted its leases while
   * its connections lived on: they are written again (those still there are kept).
   */
  private async rewriteHeld(): Promise<void> {
    const leases = [...this.held.values()];
    if (leases.length === 0) {
      return;
    }
    await this.db.query(
      `INSERT INTO connection_leases
         (id, node, instance, channel, subject, session_id, remote_address, since)
       SELECT u.id, $1, $2, u.channel, u.subject, u.session_id, u.remote_address, u.since
         FROM unnest($3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::timestamptz[])
           AS u (id, channel, subject, session_id, remote_address, since)
       ON CONFLICT (id) DO NOTHING`,
      [
        this.config.NODE_ID,
        this.membership.instance,
        leases.map((l) => l.id),
        leases.map((l) => l.channel),
        leases.map((l) => l.subject),
        leases.map((l) => l.sessionId),
        leases.map((l) => l.remoteAddress),
        leases.map((l) => l.since.toISOString()),
      ],
    );
    this.logger.warn({ leases: leases.length }, 'connection leases written again after a lapse');
  }

  private async select(
    where: string,
    params: unknown[],
    order: 'ASC' | 'DESC',
  ): Promise<LeaseView[]> {
    const rows = await this.db.query<LeaseRow[]>(
      `SELECT l.id, l.node, l.channel, l.subject, l.session_id, l.remote_address, l.since,
              (${VALID}) AS valid
         FROM connection_leases l JOIN nodes n ON n.id = l.node
        WHERE ${where}
        ORDER BY l.since ${order}, l.id`,
      [this.config.NODE_DEAD_AFTER_MS, ...params],
    );
    return rows.map((r) => ({
      id: r.id,
      node: r.node,
      channel: r.channel,
      subject: r.subject,
      sessionId: r.session_id,
      remoteAddress: r.remote_address,
      since: r.since,
      valid: r.valid,
    }));
  }

  private warnOnce(err: unknown, message: string): void {
    if (!this.failing) {
      this.failing = true;
      this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, message);
    }
  }
}
