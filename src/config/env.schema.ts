import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import { parseS3Url } from '../storage/s3-url';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], {
    error: 'must be true or false',
  })
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const postgresUrl = z.string().refine(
  (v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'postgres:' || u.protocol === 'postgresql:') && u.hostname !== '';
    } catch {
      return false;
    }
  },
  { message: 'must be a postgres:// or postgresql:// URL with a host' },
);

const httpUrl = z.string().refine(
  (v) => {
    try {
      const u = new URL(v);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  },
  { message: 'must be an http:// or https:// URL' },
);

const s3Url = z.string().superRefine((v, ctx) => {
  try {
    parseS3Url(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const readableFile = z.string().refine((p) => existsSync(p), { message: 'file does not exist' });

/**
 * TRUST_PROXY follows Express' `trust proxy` semantics: `false`, `true`, a hop count, or a comma
 * list of addresses/CIDRs/names (`loopback`, `uniquelocal`, ...).
 */
const trustProxy = z
  .string()
  .trim()
  .transform((v, ctx): boolean | number | string[] => {
    if (v === '' || v === 'false') {
      return false;
    }
    if (v === 'true') {
      return true;
    }
    if (/^\d+$/.test(v)) {
      return Number(v);
    }
    const list = v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (list.some((s) => !/^[0-9a-fA-F:./]+$|^(loopback|linklocal|uniquelocal)$/.test(s))) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be true, false, a hop count or a comma list of addresses/CIDRs',
      });
      return z.NEVER;
    }
    return list;
  });

const csv = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

/**
 * The longest time between a webhook's first failed attempt and its last attempt, in seconds:
 * pg-boss waits `delay * 2^min(n, 16) / 2 * (1 + random)` before retry n (its exponent stops at
 * 16), so at most `delay * 2^min(n, 16)`, and at least half that. The README and
 * docs/webhooks.md give the figure for the defaults.
 */
export function maxRetryWindowSeconds(retryLimit: number, retryDelaySeconds: number): number {
  let total = 0;
  for (let n = 1; n <= retryLimit; n++) {
    total += retryDelaySeconds * 2 ** Math.min(n, 16);
  }
  return total;
}

/**
 * Retries stay well within pg-boss' retention of queued jobs (14 days), after which a job waiting
 * for its retry would be deleted unseen.
 */
const MAX_WEBHOOK_RETRY_WINDOW_S = 7 * 24 * 3600;

/**
 * Every environment variable the service reads, with its default. Validated once at boot; the
 * README's configuration table and .env.example list the same names.
 */
export const envSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    NODE_ID: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -')
      .default(
        hostname()
          .slice(0, 64)
          .replace(/[^A-Za-z0-9._-]/g, '-'),
      ),
    /** How often this node renews its row in `nodes`. */
    NODE_HEARTBEAT_MS: int(100, 60_000).default(2_000),
    /** A node whose heartbeat is older than this is dead: its leases lapse, its sessions move. */
    NODE_DEAD_AFTER_MS: int(500, 600_000).default(10_000),
    /** The longest wait for another node to answer a routed request (a kick, a push, a takeover). */
    CLUSTER_REQUEST_TIMEOUT_MS: int(50, 60_000).default(3_000),
    /**
     * `all`: one node does everything. `gateway`: ingest only, recording work goes to workers.
     * `worker`: records what gateways ingest, serves no stream (docs/recording.md, "Gateways and
     * workers").
     */
    NODE_ROLE: z.enum(['all', 'gateway', 'worker']).default('all'),
    PORT: int(0, 65535).default(8080),
    /** Serves /metrics on this port of HOST instead of PORT (0 picks a free one). */
    METRICS_PORT: int(0, 65535).optional(),
    HOST: z.string().min(1).default('0.0.0.0'),
    LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),

    DATABASE_URL: postgresUrl.optional(),
    DB_MIGRATE: bool.default(true),
    DB_POOL_MAX: int(1, 200).default(10),
    DATA_DIR: z.string().min(1).default('./data'),
    /** Unset: DATA_DIR/spool. Shared by the nodes of a cluster (docs/operations/scale-out.md). */
    SPOOL_DIR: z.string().min(1).optional(),
    /** Unset: DATA_DIR/recordings. */
    RECORDINGS_DIR: z.string().min(1).optional(),
    EMBEDDED_PG_PORT: int(0, 65535).default(0),

    AUTH_JWKS_URL: httpUrl.optional(),
    AUTH_JWKS_REQUESTS_PER_MIN: int(1, 600).default(10),
    AUTH_JWKS_CACHE_MAX_AGE_MS: int(1000, 86_400_000).default(600_000),
    AUTH_JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    AUTH_ISSUER: z.string().min(1).optional(),
    AUTH_AUDIENCE: z.string().min(1).optional(),
    AUTH_CHANNEL_CLAIM: z.string().min(1).default('channel'),
    AUTH_CLOCK_TOLERANCE_S: int(0, 300).default(5),

    ALLOWED_ORIGINS: csv.default([]),
    TRUST_PROXY: trustProxy.default(false),
    TICKET_TTL_MS: int(1000, 3_600_000).default(60_000),
    TLS_CERT_FILE: readableFile.optional(),
    TLS_KEY_FILE: readableFile.optional(),
    HTTP_BODY_LIMIT_BYTES: int(1024, 64 * 1024 * 1024).default(256 * 1024),
    HTTP_RATE_LIMIT_PER_MIN: int(1, 1_000_000).default(3_000),
    HTTP_REFUSED_RATE_LIMIT_PER_MIN: int(1, 1_000_000).default(120),
    HTTP_RATE_LIMIT_ADDRESSES_MAX: int(1, 10_000_000).default(100_000),
    HTTP_HEADERS_TIMEOUT_MS: int(1_000, 600_000).default(10_000),
    HTTP_REQUEST_TIMEOUT_MS: int(1_000, 3_600_000).default(90_000),
    HTTP_BODY_IDLE_TIMEOUT_MS: int(100, 600_000).default(10_000),

    AUDIT_FLUSH_INTERVAL_MS: int(10, 60_000).default(250),
    AUDIT_BATCH_SIZE: int(1, 10_000).default(500),
    AUDIT_BUFFER_MAX: int(100, 1_000_000).default(20_000),
    AUDIT_REPLAY_INTERVAL_MS: int(100, 600_000).default(5_000),
    AUDIT_REFUSAL_WINDOW_MS: int(1_000, 3_600_000).default(60_000),
    AUDIT_REFUSAL_KEYS_MAX: int(1, 1_000_000).default(10_000),

    HEALTH_MIN_FREE_DISK_MB: int(0, 10_000_000).default(512),
    HEALTH_AUDIT_BACKLOG_MAX: int(1, 1_000_000).default(10_000),
    FFMPEG_PATH: readableFile.optional(),
    FFPROBE_PATH: readableFile.optional(),
    RETENTION_DAYS: int(1, 36_500).optional(),
    RETENTION_SWEEP_MS: int(1_000, 86_400_000).default(3_600_000),

    ACK_INTERVAL_MS: int(10, 10_000).default(200),
    ACK_MAX_FRAMES: int(1, 10_000).default(50),
    MAX_FRAME_BYTES: int(1024, 64 * 1024 * 1024).default(2 * 1024 * 1024),
    STREAM_MAX_FPS: int(1, 10_000).default(30),
    STREAM_MAX_KBPS: int(64, 1_000_000).default(16_000),
    /** Video codec families a channel accepts unless its channel_quotas row says otherwise. */
    VIDEO_CODECS: csv
      .pipe(z.array(z.enum(['jpeg', 'avc', 'vp8', 'vp9'])).min(1))
      .default(['jpeg', 'avc', 'vp8', 'vp9']),
    /** Largest coded size of compressed video (and of declared capture sizes), per channel too. */
    VIDEO_MAX_WIDTH: int(16, 8192).default(1920),
    VIDEO_MAX_HEIGHT: int(16, 8192).default(1080),
    /** Longest run of compressed video without a key frame before the server asks for one. */
    VIDEO_KEYFRAME_INTERVAL_MS: int(500, 600_000).default(5_000),
    STREAM_FLOW_GRACE_MS: int(0, 600_000).default(5_000),
    RESUME_WINDOW_MS: int(1000, 86_400_000).default(60_000),
    HEARTBEAT_INTERVAL_MS: int(100, 600_000).default(15_000),
    HEARTBEAT_TIMEOUT_MS: int(200, 3_600_000).default(30_000),
    CONTROL_MESSAGES_PER_SEC: int(1, 10_000).default(50),
    HTTP_FRAMES_BODY_LIMIT_BYTES: int(1024, 512 * 1024 * 1024).default(16 * 1024 * 1024),
    SESSION_STATS_FLUSH_MS: int(50, 600_000).default(1_000),

    QUOTA_NODE_MAX_CONNECTIONS: int(1, 1_000_000).default(10_000),
    QUOTA_CHANNEL_MAX_CONNECTIONS: int(0, 1_000_000).default(1_000),
    QUOTA_HANDSHAKES_PER_MIN: int(1, 1_000_000).default(600),
    QUOTA_IP_HANDSHAKES_PER_MIN: int(1, 1_000_000).default(120),
    QUOTA_REFRESH_MS: int(50, 600_000).default(5_000),

    RECORDING_PRESET: z
      .enum(['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow'])
      .default('superfast'),
    RECORDING_CRF: int(0, 51).default(25),
    RECORDING_FPS: z.coerce.number().min(1).max(60).default(10),
    RECORDING_WIDTH: int(16, 3840)
      .refine((n) => n % 2 === 0, 'must be even')
      .default(640),
    RECORDING_HEIGHT: int(16, 2160)
      .refine((n) => n % 2 === 0, 'must be even')
      .default(480),
    RECORDING_WATERMARK: bool.default(false),
    RECORDING_DECODE_CHECK: bool.default(true),
    RECORDING_MAX_ENCODERS: int(1, 1_000).optional(),
    RECORDING_MAX_INPUT_PIXELS: int(1, 1_000_000_000).default(40_000_000),
    RECORDING_CAPACITY_FPS: int(1, 1_000_000).optional(),
    RECORDING_CAPACITY_HEADROOM: z.coerce.number().min(0).max(0.9).default(0.2),
    RECORDING_ADMISSION: z.enum(['throttle', 'refuse']).default('throttle'),
    RECORDING_MIN_FPS: int(1, 120).default(5),
    IMAGE_MAX_SCALE: z.coerce.number().min(1).max(16).default(2),
    IMAGE_DECODE_CONCURRENCY: int(1, 256).optional(),
    IMAGE_SESSION_BUDGET_MS_PER_S: int(1, 60_000).default(300),
    KEEP_SPOOL: bool.default(false),
    /** Unset: recordings stay under RECORDINGS_DIR (docs/recording.md, S3-compatible storage). */
    RECORDINGS_S3_URL: s3Url.optional(),
    /** `presigned`: downloads of uploaded recordings answer 302 to a presigned URL. */
    RECORDINGS_S3_REDIRECT: z.enum(['off', 'presigned']).default('off'),
    RECORDINGS_S3_PRESIGN_TTL_S: int(10, 3_600).default(60),
    /** First retry of a failed upload; each next one waits twice as long, at most an hour. */
    RECORDINGS_S3_RETRY_DELAY_S: int(1, 3_600).default(30),
    /** A worker's lease on a recording lapses this long after its last renewal (renewed at a third). */
    RECORDING_LEASE_MS: int(1_000, 600_000).default(5_000),
    /** How long a gateway's `close` waits for a worker to make the recording ready. */
    RECORDING_CLOSE_WAIT_MS: int(0, 3_600_000).default(30_000),
    /** Encoders a recorder behind at `close` splits its tail across (0: one per core; 1: never split). */
    RECORDING_TAIL_ENCODERS: int(0, 64).default(0),

    MEDIA_UPLOAD_MAX_BYTES: int(1024, 1_000_000_000_000).default(1024 * 1024 * 1024),
    MEDIA_JOB_CONCURRENCY: int(1, 256).optional(),
    MEDIA_JOB_RETRY_LIMIT: int(0, 20).default(3),
    MEDIA_JOB_RETRY_DELAY_S: int(1, 3_600).default(10),
    // pg-boss expires an active job after at most 24 h; the timeout stays below that.
    MEDIA_JOB_TIMEOUT_MINUTES: int(1, 23 * 60).default(240),
    MEDIA_JOB_RETENTION_HOURS: int(1, 87_600).default(72),
    /** Unset: allowed outside production (see webhookUrlPolicy). */
    WEBHOOK_ALLOW_HTTP: bool.optional(),
    WEBHOOK_ALLOW_PRIVATE: bool.optional(),
    WEBHOOK_RETRY_LIMIT: int(0, 20).default(10),
    WEBHOOK_RETRY_DELAY_SECONDS: int(1, 3_600).default(5),
    WEBHOOK_TIMEOUT_MS: int(1_000, 60_000).default(10_000),
    WEBHOOK_CONCURRENCY: int(1, 100).default(4),

    SHUTDOWN_TIMEOUT_MS: int(100, 600_000).default(15_000),
  })
  .superRefine((env, ctx) => {
    if (Boolean(env.TLS_CERT_FILE) !== Boolean(env.TLS_KEY_FILE)) {
      ctx.addIssue({
        code: 'custom',
        path: [env.TLS_CERT_FILE ? 'TLS_KEY_FILE' : 'TLS_CERT_FILE'],
        message: 'TLS_CERT_FILE and TLS_KEY_FILE must be set together',
      });
    }
    if (env.HTTP_REQUEST_TIMEOUT_MS < env.HTTP_HEADERS_TIMEOUT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['HTTP_REQUEST_TIMEOUT_MS'],
        message: 'must be at least HTTP_HEADERS_TIMEOUT_MS',
      });
    }
    if (env.HEARTBEAT_TIMEOUT_MS <= env.HEARTBEAT_INTERVAL_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['HEARTBEAT_TIMEOUT_MS'],
        message: 'must be greater than HEARTBEAT_INTERVAL_MS',
      });
    }
    if (
      maxRetryWindowSeconds(env.WEBHOOK_RETRY_LIMIT, env.WEBHOOK_RETRY_DELAY_SECONDS) >
      MAX_WEBHOOK_RETRY_WINDOW_S
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['WEBHOOK_RETRY_LIMIT'],
        message:
          'with WEBHOOK_RETRY_DELAY_SECONDS, retries would last more than 7 days (lower either)',
      });
    }
    if (env.NODE_DEAD_AFTER_MS < 3 * env.NODE_HEARTBEAT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['NODE_DEAD_AFTER_MS'],
        message: 'must be at least 3 × NODE_HEARTBEAT_MS (one late heartbeat must not kill a node)',
      });
    }
    if (env.NODE_ENV === 'production' && !env.AUTH_JWKS_URL && !env.AUTH_JWT_SECRET) {
      ctx.addIssue({
        code: 'custom',
        path: ['AUTH_JWKS_URL'],
        message: 'production needs AUTH_JWKS_URL or AUTH_JWT_SECRET (no development secret)',
      });
    }
  });

export type Env = z.output<typeof envSchema>;
