export interface RateLimiterOptions {
  /** Tokens a key gains per minute; also the bucket's size (a minute's budget may come at once). */
  perMin: number;
  /** Keys held at once; the least recently used is forgotten first. */
  maxKeys: number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

/**
 * A token bucket per key (a client address), refilled evenly. Taking and checking are one
 * synchronous step, so concurrent requests cannot race past the limit. At most `maxKeys` buckets
 * are held, in least-recently-used order (a Map keeps insertion order; a use re-inserts): a flood
 * of new addresses evicts old buckets instead of growing the map, and an evicted address starts
 * again with a full bucket, which is what an address unseen for that long would have anyway.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;

  constructor(private readonly options: RateLimiterOptions) {
    this.perMs = options.perMin / 60_000;
  }

  /** Keys held. */
  get size(): number {
    return this.buckets.size;
  }

  /** Takes one token for `key`: 0 when granted, else the ms until one is available. */
  take(key: string, nowMs: number): number {
    const bucket = this.refill(key, nowMs);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) / this.perMs);
  }

  /** Like `take`, without taking: 0 when a token is available, else the ms until one is. */
  check(key: string, nowMs: number): number {
    const bucket = this.buckets.get(key);
    if (bucket === undefined) {
      return 0;
    }
    const tokens = Math.min(
      this.options.perMin,
      bucket.tokens + (nowMs - bucket.atMs) * this.perMs,
    );
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) / this.perMs);
  }

  private refill(key: string, nowMs: number): Bucket {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.options.maxKeys) {
        const oldest = this.buckets.keys().next().value as string;
        this.buckets.delete(oldest);
      }
      bucket = { tokens: this.options.perMin, atMs: nowMs };
    } else {
      this.buckets.delete(key);
      bucket.tokens = Math.min(
        this.options.perMin,
        bucket.tokens + Math.max(0, nowMs - bucket.atMs) * this.perMs,
      );
      bucket.atMs = nowMs;
    }
    this.buckets.set(key, bucket);
    return bucket;
  }
}
