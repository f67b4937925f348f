import {
  Inject,
  Injectable,
  Logger,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { ThrottlerStorageService } from '@nestjs/throttler';
import { InjectRepository } from '@nestjs/typeorm';
import { isIPv6 } from 'node:net';
import type { Repository } from 'typeorm';
import { ConnectionLeases, type LeaseInfo } from '../cluster/connection-leases.service';
import { PgThrottlerStorage } from '../cluster/pg-throttler-storage';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { ChannelQuotaEntity } from './channel-quota.entity';
import { z } from 'zod';
import { VIDEO_CODEC_FAMILIES, type VideoCodecFamily } from '../protocol/codecs';
import type { MediaPolicy } from './media-policy';

/** The effective quotas of one channel: its channel_quotas override, else the env default. */
export const channelLimitsSchema = z.strictObject({
  maxConnections: z.number().int().min(0),
  handshakesPerMin: z.number().int().min(0),
  maxFps: z.number().min(0),
  maxKbps: z.number().min(0),
  /** Video codec families accepted in `open`. */
  videoCodecs: z.array(z.enum(VIDEO_CODEC_FAMILIES as [VideoCodecFamily, ...VideoCodecFamily[]])),
  /** Largest coded size of compressed video. */
  maxWidth: z.number().int().min(16),
  maxHeight: z.number().int().min(16),
});

export type ChannelLimits = Readonly<z.output<typeof channelLimitsSchema>>;

/** `unavailable`: the cluster-wide counts cannot be read (Postgres down), so nothing is admitted. */
export type QuotaReason = 'ip_rate' | 'node_full' | 'channel_full' | 'channel_rate' | 'unavailable';

/** The answer of a quota check; a rejection carries what the HTTP response needs. */
export type QuotaVerdict =
  | { ok: true }
  | {
      ok: false;
      reason: QuotaReason;
      status: 429 | 503;
      /** For the Retry-After header, whole seconds, at least 1. */
      retryAfterS: number;
      message: string;
    };

export type QuotaRejection = Extract<QuotaVerdict, { ok: false }>;

/** The answer of admit(): a rejection, or a reserved slot the connection must release. */
export type AdmitResult = { ok: true; slot: ConnectionSlot } | (QuotaRejection & { slot?: never });

/** Handshake rates are per minute. */
const RATE_WINDOW_MS = 60_000;

/** Postgres cannot count the channel: a short backoff, as for other database outages. */
const UNAVAILABLE_RETRY_S = 5;

/**
 * The throttler storage keeps one timestamp per hit and, when a key is over its limit, computes
 * `Math.min(...hits)`: above ~150k hits that overflows the stack, and each hit costs O(limit). No
 * node can take 100k handshakes a minute anyway, so larger configured rates are clamped to this.
 */
const MAX_RATE_PER_WINDOW = 100_000;

/**
 * Retry-After for connection-count rejections. A slot frees when some live stream ends, which
 * nobody can predict, so this is only a backoff floor: short enough that an idle slot is not left
 * unused for long, long enough that a fleet of clients does not turn a full node into a handshake
 * storm (TLS + JWT verification each). A full node is a capacity problem that rarely clears at
 * once, and a load balancer may send the retry to another node: 5 s. A full channel frees when one
 * of the channel's own streams ends (often its previous connection of a reconnecting client): 2 s.
 */
const NODE_FULL_RETRY_S = 5;
const CHANNEL_FULL_RETRY_S = 2;
/** A channel whose max_connections is 0 is switched off: nothing will change within seconds. */
const CHANNEL_DISABLED_RETRY_S = 60;

/** Bucket names in the throttler storage (its `throttlerName`); keys carry their own prefix. */
const IP_BUCKET = 'ip-handshakes';
const CHANNEL_BUCKET = 'channel-handshakes';

/**
 * A reserved connection: one count on the node and its lease on the channel, cluster-wide.
 * release() frees both exactly once however often it is called, so a connection ending by close,
 * error and terminate at once cannot free two slots; it is the one place a lease is deleted.
 */
export class ConnectionSlot {
  private done = false;

  constructor(
    readonly connectionId: string,
    readonly channel: string,
    private readonly owner: {
      release(slot: ConnectionSlot): void;
      bindSession(slot: ConnectionSlot, sessionId: string): void;
    },
  ) {}

  get released(): boolean {
    return this.done;
  }

  release(): void {
    if (this.done) {
      return;
    }
    this.done = true;
    this.owner.release(this);
  }

  /** The connection now carries this session: its lease says so, for routing. */
  bindSession(sessionId: string): void {
    if (!this.done) {
      this.owner.bindSession(this, sessionId);
    }
  }
}

/**
 * Handshake and connection quotas (spec section 2: 429 for a channel, 503 for the node).
 *
 * Cluster-wide (issue 15), in Postgres: a channel's live connections are its valid connection
 * leases (ConnectionLeases: admitted atomically against max_connections across all nodes), and
 * its handshake rate is a counter in PgThrottlerStorage shared by the nodes.
 *
 * Per node, in memory: the node's total (QUOTA_NODE_MAX_CONNECTIONS guards this process's memory
 * and file descriptors, which no other node shares) and the per-IP handshake rate. The IP rate
 * stays per node on purpose: it is checked before authentication to protect the node's CPU (TLS,
 * token checks) from a flood, and a database write per unauthenticated attempt would hand that
 * flood to Postgres, which every node shares. Behind N nodes an address gets up to N times its
 * rate; each node is still protected. The per-channel overrides come from Postgres, reloaded every
 * QUOTA_REFRESH_MS so changes apply without a restart.
 *
 * Counting rules (several buckets charged per attempt, as in twenty's throttler):
 * - the rate counters count handshake attempts: a per-IP hit before authentication, then a
 *   per-channel hit for every authenticated attempt the node has room for, including those the
 *   channel's connection count rejects (a fleet retrying against a full channel is the storm the
 *   channel rate exists to slow down). The storages do not record hits beyond the limit, so
 *   hammering while limited cannot push the window out.
 * - the connection counters count live connections: only an admitted handshake takes a slot.
 */
@Injectable()
export class QuotaService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(QuotaService.name);
  /** In-memory per node; we own it, so we also stop its sweep timer (Nest does not know it). */
  private readonly rates = new ThrottlerStorageService();
  private readonly defaults: ChannelLimits;
  private overrides = new Map<string, ChannelLimits>();
  private nodeCount = 0;
  private readonly channelCounts = new Map<string, number>();
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | null = null;
  /** Set by a failed refresh, cleared by a good one: one warning per outage, not one per tick. */
  private refreshFailing = false;
  private clampWarned = false;
  private unavailableWarnedAt = -Infinity;

  constructor(
    @InjectRepository(ChannelQuotaEntity)
    private readonly quotaRows: Pick<Repository<ChannelQuotaEntity>, 'find'>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly leases: ConnectionLeases,
    private readonly channelRates: PgThrottlerStorage,
  ) {
    this.defaults = Object.freeze({
      maxConnections: config.QUOTA_CHANNEL_MAX_CONNECTIONS,
      handshakesPerMin: config.QUOTA_HANDSHAKES_PER_MIN,
      maxFps: config.STREAM_MAX_FPS,
      maxKbps: config.STREAM_MAX_KBPS,
      videoCodecs: Object.freeze([...config.VIDEO_CODECS]) as VideoCodecFamily[],
      maxWidth: config.VIDEO_MAX_WIDTH,
      maxHeight: config.VIDEO_MAX_HEIGHT,
    });
  }

  /**
   * Loads the overrides before the first handshake. When Postgres fails here the env defaults
   * apply until a refresh succeeds, rather than failing the boot over an optional table.
   */
  async onModuleInit(): Promise<void> {
    await this.refresh();
    this.refreshTimer = setInterval(
      () => void this.refresh(),
      this.config.QUOTA_REFRESH_MS,
    ).unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.refreshTimer);
    this.refreshTimer = undefined;
    this.rates.onApplicationShutdown();
  }

  /**
   * Reloads channel_quotas; also for the admin API, to apply a change at once. Never rejects: on
   * failure the last good copy stays. Concurrent calls share one query.
   */
  refresh(): Promise<void> {
    this.refreshing ??= this.load().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /**
   * Reloads channel_quotas with a query that starts after this call, so a change committed before
   * it is seen (a refresh already under way may have read the table before the change). For the
   * admin API: a quota set there applies to the next handshake. Never rejects, like refresh().
   */
  async reloadNow(): Promise<void> {
    await this.refreshing;
    await this.refresh();
  }

  /** The env defaults, which a channel without an override (or a null column) gets. */
  defaultLimits(): ChannelLimits {
    return this.defaults;
  }

  /** The effective limits of a channel (a shared frozen object: do not mutate). */
  limitsFor(channel: string): ChannelLimits {
    return this.overrides.get(channel) ?? this.defaults;
  }

  /** What the channel accepts of a session's media, for `open` and `opened`. */
  mediaPolicyFor(channel: string): MediaPolicy {
    const limits = this.limitsFor(channel);
    return {
      videoCodecs: limits.videoCodecs,
      maxWidth: limits.maxWidth,
      maxHeight: limits.maxHeight,
      maxKbps: limits.maxKbps,
      keyframeIntervalMs: this.config.VIDEO_KEYFRAME_INTERVAL_MS,
    };
  }

  /**
   * The per-IP handshake rate, checked before authentication so that bad credentials cost a hit
   * too. IPv6 addresses count per /64 (one subscriber's prefix; per address would be free to
   * evade), IPv4-mapped IPv6 as the IPv4 address.
   */
  async checkIpHandshake(ip: string): Promise<QuotaVerdict> {
    const limit = this.config.QUOTA_IP_HANDSHAKES_PER_MIN;
    const retryAfterS = await this.hit(`ip:${ipBucketKey(ip)}`, IP_BUCKET, limit);
    if (retryAfterS === 0) {
      return { ok: true };
    }
    return {
      ok: false,
      reason: 'ip_rate',
      status: 429,
      retryAfterS,
      message: `too many handshakes from this address (limit ${limit} per minute)`,
    };
  }

  /**
   * Admits a connection of an authenticated channel, or says why not. Checks, in this order of
   * precedence for the reported reason: node total (503 node_full), channel connections (429
   * channel_full), channel handshake rate (429 channel_rate). node_full comes first, and costs
   * the database nothing, because a 503 sends the client, or the load balancer, to another node,
   * where the channel may well have room. retryAfterS is the largest of the failing checks',
   * since retrying before then fails anyway. When Postgres cannot answer, nothing is admitted
   * (503 unavailable): the channel's count cannot be known, and live connections go on.
   *
   * The node slot is taken synchronously before the first await and given back on every path
   * that does not admit, so concurrent handshakes cannot overfill the node; the channel's lease is
   * inserted atomically against the cluster's count (see ConnectionLeases).
   */
  async admit(lease: LeaseInfo): Promise<AdmitResult> {
    const { channel } = lease;
    const limits = this.limitsFor(channel);
    if (this.nodeCount >= this.config.QUOTA_NODE_MAX_CONNECTIONS) {
      return {
        ok: false,
        reason: 'node_full',
        status: 503,
        retryAfterS: NODE_FULL_RETRY_S,
        message: 'this node is at its connection limit; retry later or on another node',
      };
    }
    if (limits.maxConnections === 0) {
      return channelFull(limits.maxConnections, 0);
    }
    this.nodeCount++;
    let admitted = false;
    try {
      const rateRetryS = await retryOnce(() => this.channelHit(channel, limits.handshakesPerMin));
      if (rateRetryS > 0) {
        // Over its rate: no lease, but the reason is channel_full if the channel is full anyway.
        const live = await this.leases.channelCount(channel);
        return live >= limits.maxConnections
          ? channelFull(limits.maxConnections, rateRetryS)
          : {
              ok: false,
              reason: 'channel_rate',
              status: 429,
              retryAfterS: rateRetryS,
              message: `this channel is over its handshake rate of ${limits.handshakesPerMin} per minute`,
            };
      }
      if (!(await retryOnce(() => this.leases.acquire(lease, limits.maxConnections)))) {
        return channelFull(limits.maxConnections, 0);
      }
      admitted = true;
    } catch (err) {
      this.warnUnavailable(err);
      return {
        ok: false,
        reason: 'unavailable',
        status: 503,
        retryAfterS: UNAVAILABLE_RETRY_S,
        message: 'connection quotas cannot be checked right now; retry later',
      };
    } finally {
      if (!admitted) {
        this.nodeCount--;
      }
    }
    this.channelCounts.set(channel, (this.channelCounts.get(channel) ?? 0) + 1);
    return { ok: true, slot: new ConnectionSlot(lease.id, channel, this.slotOwner) };
  }

  /** Live connections of this node, in total and per channel (channels with none are omitted). */
  stats(): { node: number; channels: Record<string, number> } {
    return { node: this.nodeCount, channels: Object.fromEntries(this.channelCounts) };
  }

  private readonly slotOwner = {
    release: (slot: ConnectionSlot): void => {
      this.leases.release(slot.connectionId);
      this.releaseCounts(slot.channel);
    },
    bindSession: (slot: ConnectionSlot, sessionId: string): void => {
      this.leases.bindSession(slot.connectionId, sessionId);
    },
  };

  private releaseCounts(channel: string): void {
    this.nodeCount--;
    const left = (this.channelCounts.get(channel) ?? 0) - 1;
    if (left > 0) {
      this.channelCounts.set(channel, left);
    } else {
      // Deleted at zero, so the map holds only live channels.
      this.channelCounts.delete(channel);
    }
  }

  /** One hit on the channel's cluster-wide handshake counter: 0, or seconds until it frees. */
  private async channelHit(channel: string, limit: number): Promise<number> {
    const record = await this.channelRates.increment(
      `channel:${channel}`,
      RATE_WINDOW_MS,
      limit,
      0,
      CHANNEL_BUCKET,
    );
    return record.isBlocked ? Math.max(1, record.timeToBlockExpire) : 0;
  }

  private warnUnavailable(err: unknown): void {
    const now = Date.now();
    // One line per outage (per minute at most), not one per refused handshake.
    if (now - this.unavailableWarnedAt >= RATE_WINDOW_MS) {
      this.unavailableWarnedAt = now;
      this.logger.warn(
        `connection quotas cannot be checked, refusing new connections: ${describe(err)}`,
      );
    }
  }

  /**
   * Charges one hit to this node's sliding one-minute window. Returns 0 when within the limit,
   * else the seconds until the oldest counted hit expires. The storage takes milliseconds and
   * answers in whole seconds (rounded up); without a block duration it does not count hits over
   * the limit.
   */
  private async hit(key: string, bucket: string, limit: number): Promise<number> {
    if (limit > MAX_RATE_PER_WINDOW && !this.clampWarned) {
      this.clampWarned = true;
      this.logger.warn(
        `handshake rate ${limit}/min clamped to ${MAX_RATE_PER_WINDOW}/min (in-memory counter limit)`,
      );
    }
    const record = await this.rates.increment(
      key,
      RATE_WINDOW_MS,
      Math.min(limit, MAX_RATE_PER_WINDOW),
      0,
      bucket,
    );
    return record.isBlocked ? Math.max(1, record.timeToBlockExpire) : 0;
  }

  private async load(): Promise<void> {
    let rows: ChannelQuotaEntity[];
    try {
      rows = await this.quotaRows.find();
    } catch (err) {
      if (!this.refreshFailing) {
        this.refreshFailing = true;
        this.logger.warn(
          `cannot load channel_quotas, keeping the last loaded overrides: ${describe(err)}`,
        );
      }
      return;
    }
    const next = new Map<string, ChannelLimits>();
    for (const row of rows) {
      next.set(
        row.channel,
        Object.freeze({
          maxConnections: row.maxConnections ?? this.defaults.maxConnections,
          handshakesPerMin: row.handshakesPerMin ?? this.defaults.handshakesPerMin,
          maxFps: row.maxFps ?? this.defaults.maxFps,
          maxKbps: row.maxKbps ?? this.defaults.maxKbps,
          videoCodecs: row.videoCodecs ?? this.defaults.videoCodecs,
          maxWidth: row.maxWidth ?? this.defaults.maxWidth,
          maxHeight: row.maxHeight ?? this.defaults.maxHeight,
        }),
      );
    }
    // Lowered limits do not cut live connections: new ones wait until the count is under them.
    this.overrides = next;
    if (this.refreshFailing) {
      this.refreshFailing = false;
      this.logger.log(`channel_quotas loaded again (${rows.length} overrides)`);
    }
  }
}

/**
 * The key an address's handshakes count under: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6
 * by its /64 prefix. Anything else (e.g. 'unknown') is used as given.
 */
export function ipBucketKey(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped) {
    return mapped[1];
  }
  if (!isIPv6(ip)) {
    return ip;
  }
  const [address] = ip.split('%');
  const [head, tail] = address.split('::');
  const groupsOf = (part: string | undefined): string[] =>
    part ? part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : [];
  const front = groupsOf(head);
  const back = groupsOf(tail);
  const groups =
    tail === undefined
      ? front
      : [...front, ...new Array<string>(8 - front.length - back.length).fill('0'), ...back];
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

function channelFull(maxConnections: number, rateRetryS: number): QuotaRejection {
  return {
    ok: false,
    reason: 'channel_full',
    status: 429,
    retryAfterS: Math.max(
      maxConnections === 0 ? CHANNEL_DISABLED_RETRY_S : CHANNEL_FULL_RETRY_S,
      rateRetryS,
    ),
    message:
      maxConnections === 0
        ? 'this channel accepts no connections'
        : `this channel is at its limit of ${maxConnections} concurrent connections`,
  };
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs `fn` again once when it fails: after a database restart the pool hands out connections
 * that died with it, and each fails its first query; the next one is fresh. A database that is
 * really down fails both.
 */
async function retryOnce<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch {
    return fn();
  }
}
