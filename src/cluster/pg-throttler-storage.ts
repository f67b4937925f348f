import { Injectable } from '@nestjs/common';
import type { ThrottlerStorage } from '@nestjs/throttler';
import type { ThrottlerStorageRecord } from '@nestjs/throttler/dist/throttler-storage-record.interface';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';

/**
 * @nestjs/throttler's storage in Postgres (`throttle_counters`), shared by every node: one
 * fixed-window counter per key, charged and read in one atomic statement. Fixed windows rather
 * than the in-memory storage's sliding ones: one row per key instead of one per hit, so a
 * counter costs the same at any rate. A window holds at most `limit + 1` hits, so hammering a
 * limited key does not grow anything. Expired rows are swept by ConnectionLeases' sweep.
 *
 * One round trip per hit: meant for authenticated, per-channel handshakes, not for anything an
 * anonymous caller can trigger at will.
 */
@Injectable()
export class PgThrottlerStorage implements ThrottlerStorage {
  constructor(@InjectDataSource() private readonly db: DataSource) {}

  async increment(
    key: string,
    ttl: number,
    limit: number,
    blockDuration: number,
    throttlerName: string,
  ): Promise<ThrottlerStorageRecord> {
    // A new window starts when the old one ended; while blocked, hits are not counted.
    const rows = await this.db.query<
      Array<{ hits: number; expire_ms: number; block_ms: number | null }>
    >(
      `INSERT INTO throttle_counters AS c (key, hits, window_ends_at, blocked_until)
       VALUES ($1, 1, now() + $2 * interval '1 millisecond',
               CASE WHEN $4 > 0 AND 1 > $3 THEN now() + $4 * interval '1 millisecond' END)
       ON CONFLICT (key) DO UPDATE SET
         hits = CASE WHEN c.window_ends_at <= now() THEN 1 ELSE LEAST(c.hits + 1, $3 + 1) END,
         window_ends_at = CASE WHEN c.window_ends_at <= now()
                               THEN now() + $2 * interval '1 millisecond'
                               ELSE c.window_ends_at END,
         blocked_until = CASE
           WHEN c.blocked_until > now() THEN c.blocked_until
           WHEN $4 > 0 AND (CASE WHEN c.window_ends_at <= now() THEN 1 ELSE c.hits + 1 END) > $3
             THEN now() + $4 * interval '1 millisecond'
         END
       RETURNING hits,
         extract(epoch FROM window_ends_at - now()) * 1000 AS expire_ms,
         extract(epoch FROM blocked_until - now()) * 1000 AS block_ms`,
      [`${throttlerName}:${key}`, ttl, limit, blockDuration],
    );
    const row = rows[0];
    const expireMs = Number(row.expire_ms);
    const blockMs = row.block_ms === null ? 0 : Number(row.block_ms);
    const timeToExpire = Math.max(0, Math.ceil(expireMs / 1000));
    const isBlocked = blockMs > 0 || row.hits > limit;
    return {
      totalHits: row.hits,
      timeToExpire,
      isBlocked,
      timeToBlockExpire: isBlocked
        ? Math.max(1, Math.ceil(Math.max(blockMs, blockDuration > 0 ? 0 : expireMs) / 1000))
        : 0,
    };
  }
}
