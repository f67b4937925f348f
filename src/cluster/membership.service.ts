import {
  type BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Client } from 'pg';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { DataSource } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { RUNTIME, type Runtime } from '../config/runtime';
import { PACKAGE_VERSION } from '../docs/version';

/** What `nodes` says about one node. */
export interface NodeView {
  id: string;
  role: string;
  host: string;
  pid: number;
  version: string;
  startedAt: Date;
  heartbeatAt: Date;
  stoppedAt: Date | null;
  alive: boolean;
}

/**
 * The SQL condition "node `alias` is alive", judged by the database's clock (nodes' clocks may
 * disagree; they all share this one). `$param` carries NODE_DEAD_AFTER_MS.
 */
export function nodeAliveSql(alias: string, param: string): string {
  return `(${alias}.stopped_at IS NULL AND ${alias}.heartbeat_at > now() - ${param} * interval '1 millisecond')`;
}

/**
 * This node's membership of the cluster: its row in `nodes`, renewed every NODE_HEARTBEAT_MS.
 * Others count it dead once the heartbeat is NODE_DEAD_AFTER_MS old; so does this node itself
 * (`healthy` turns false and readiness fails) once it has failed to renew for that long, since by
 * then the others may already have taken its sessions over.
 *
 * Renewals go over a connection of their own, outside the pool: in a pool saturated by a burst
 * of resumes a renewal waited behind them for longer than the lease (bench:soak, 2026-12-03: a
 * restarted node's heartbeat 17 s old), the node fenced every session, and the churn that
 * followed kept the pools saturated. A lease must cost one round trip, whatever else the node does.
 */
@Injectable()
export class Membership implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(Membership.name);
  /** This process: a restart under the same NODE_ID is another instance. */
  readonly instance = randomUUID();
  private timer: NodeJS.Timeout | undefined;
  /**
   * Fires when the last renewal turns NODE_DEAD_AFTER_MS old: the lapse is noticed then, not at
   * the next tick (up to NODE_HEARTBEAT_MS later, when the others may already count this node dead).
   */
  private lapseTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the last renewal the database confirmed; 0 before the first. */
  private renewedAt = 0;
  private renewing = false;
  private failing = false;
  private stopped = false;
  private readonly lapseListeners: Array<() => void> = [];
  private lapsed = false;
  /** The renewals' own connection; null until (re)connected. */
  private leaseConn: Client | null = null;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(RUNTIME) private readonly runtime: Runtime,
    @InjectDataSource() private readonly db: DataSource,
  ) {}

  get nodeId(): string {
    return this.config.NODE_ID;
  }

  /** True while the last renewal is younger than NODE_DEAD_AFTER_MS. */
  get healthy(): boolean {
    return this.renewedAt > 0 && this.heartbeatAgeMs() < this.config.NODE_DEAD_AFTER_MS;
  }

  /** Milliseconds since the last confirmed renewal (Infinity before the first). */
  heartbeatAgeMs(): number {
    return this.renewedAt === 0 ? Infinity : performance.now() - this.renewedAt;
  }

  /**
   * Called once each time this node's heartbeat lapses (NODE_DEAD_AFTER_MS without a renewal):
   * the others may now take its sessions and leases, so whatever it holds must stop.
   */
  onLapse(listener: () => void): void {
    this.lapseListeners.push(listener);
  }

  async onApplicationBootstrap(): Promise<void> {
    // The first registration is awaited: a node that cannot write its row must not take traffic.
    await this.register();
    this.timer = setInterval(() => void this.tick(), this.config.NODE_HEARTBEAT_MS);
    this.timer.unref();
  }

  /** The others see a stopped node as dead at once, rather than after NODE_DEAD_AFTER_MS. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.lapseTimer);
    await this.leaseQuery(`UPDATE nodes SET stopped_at = now() WHERE id = $1 AND instance = $2`, [
      this.nodeId,
      this.instance,
    ]).catch((err: unknown) =>
      this.logger.warn({ err }, 'could not mark this node stopped; it lapses on its own'),
    );
    const conn = this.leaseConn;
    this.leaseConn = null;
    await conn?.end().catch(() => undefined);
  }

  /**
   * A statement on the renewals' connection, opened on first use and again after it failed. A
   * statement that hangs (a database that stopped answering) errs after NODE_DEAD_AFTER_MS, by
   * when the lapse has been judged anyway, and the next renewal starts on a new connection.
   */
  private async leaseQuery<T>(sql: string, params: unknown[]): Promise<T[]> {
    let conn = this.leaseConn;
    if (conn === null) {
      const opening = new Client({
        connectionString: this.runtime.databaseUrl,
        application_name: `framegate:${this.nodeId}:lease`,
        keepAlive: true,
        connectionTimeoutMillis: this.config.NODE_DEAD_AFTER_MS,
        query_timeout: this.config.NODE_DEAD_AFTER_MS,
      });
      opening.on('error', () => this.dropLeaseConn(opening));
      try {
        await opening.connect();
      } catch (err) {
        await opening.end().catch(() => undefined);
        throw err;
      }
      this.leaseConn = conn = opening;
    }
    try {
      return (await conn.query(sql, params)).rows as T[];
    } catch (err) {
      this.dropLeaseConn(conn);
      throw err;
    }
  }

  private dropLeaseConn(conn: Client): void {
    if (this.leaseConn === conn) {
      this.leaseConn = null;
    }
    void conn.end().catch(() => undefined);
  }

  /** Every known node, alive or not, by id. */
  async nodes(): Promise<NodeView[]> {
    const rows = await this.db.query<
      Array<{
        id: string;
        role: string;
        host: string;
        pid: number;
        version: string;
        started_at: Date;
        heartbeat_at: Date;
        stopped_at: Date | null;
        alive: boolean;
      }>
    >(`SELECT n.*, ${nodeAliveSql('n', '$1')} AS alive FROM nodes n ORDER BY n.id`, [
      this.config.NODE_DEAD_AFTER_MS,
    ]);
    return rows.map((r) => ({
      id: r.id,
      role: r.role,
      host: r.host,
      pid: r.pid,
      version: r.version,
      startedAt: r.started_at,
      heartbeatAt: r.heartbeat_at,
      stoppedAt: r.stopped_at,
      alive: r.alive,
    }));
  }

  /** Whether node `id` is alive now, by the database's clock. */
  async isAlive(id: string): Promise<boolean> {
    const rows = await this.db.query<Array<{ alive: boolean }>>(
      `SELECT ${nodeAliveSql('n', '$2')} AS alive FROM nodes n WHERE n.id = $1`,
      [id, this.config.NODE_DEAD_AFTER_MS],
    );
    return rows[0]?.alive ?? false;
  }

  private async register(): Promise<void> {
    const startedAt = performance.now();
    await this.leaseQuery(
      `INSERT INTO nodes (id, instance, role, host, pid, version, started_at, heartbeat_at)
       VALUES ($1, $2, $3, $4, $5, $6, now(), now())
       ON CONFLICT (id) DO UPDATE SET
         instance = excluded.instance, role = excluded.role, host = excluded.host,
         pid = excluded.pid, version = excluded.version, started_at = now(),
         heartbeat_at = now(), stopped_at = NULL`,
      [this.nodeId, this.instance, this.config.NODE_ROLE, hostname(), process.pid, PACKAGE_VERSION],
    );
    this.renewedAt = startedAt;
    this.lapsed = false;
    this.armLapse();
  }

  private armLapse(): void {
    clearTimeout(this.lapseTimer);
    const left = this.config.NODE_DEAD_AFTER_MS - this.heartbeatAgeMs();
    this.lapseTimer = setTimeout(() => this.checkLapse(), Math.max(0, Math.ceil(left)) + 1);
    this.lapseTimer.unref();
  }

  private async tick(): Promise<void> {
    // Also while a renewal hangs (a database that stopped answering): the lapse is judged by time.
    this.checkLapse();
    if (this.renewing || this.stopped) {
      return;
    }
    this.renewing = true;
    // Measured from before the query: a renewal that took long counts from when it was sent.
    const sentAt = performance.now();
    try {
      const rows = await this.leaseQuery<{ instance: string }>(
        `UPDATE nodes SET heartbeat_at = now(), stopped_at = NULL
          WHERE id = $1 AND instance = $2 RETURNING instance`,
        [this.nodeId, this.instance],
      );
      if (rows.length === 0) {
        // Another process registered under our NODE_ID (a misconfiguration), or the row was
        // deleted: take it back, loudly; two processes must never share an id.
        this.logger.error(
          { node: this.nodeId },
          'this NODE_ID was registered by another process; every node needs its own NODE_ID',
        );
        await this.register();
      } else {
        this.renewedAt = sentAt;
        this.armLapse();
      }
      if (this.failing) {
        this.failing = false;
        this.lapsed = false;
        this.logger.log('node heartbeat renewed again');
      }
    } catch (err) {
      if (!this.failing) {
        this.failing = true;
        this.logger.warn({ err }, 'node heartbeat not renewed; retrying');
      }
    } finally {
      this.renewing = false;
    }
    this.checkLapse();
  }

  private checkLapse(): void {
    if (!this.healthy && !this.lapsed && !this.stopped) {
      this.lapsed = true;
      this.logger.error(
        { ageMs: Math.round(this.heartbeatAgeMs()) },
        'node heartbeat lapsed: the cluster counts this node dead',
      );
      for (const listener of this.lapseListeners) {
        listener();
      }
    }
  }
}
