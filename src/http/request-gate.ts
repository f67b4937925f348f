import type { NextFunction, Request, Response } from 'express';
import type { AuditWriter } from '../audit/audit-writer.service';
import { httpRefusal } from '../audit/http-refusal';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { compileTrust, remoteAddressOf, type TrustFn } from '../common/remote-address';
import type { AppConfig } from '../config/config';
import { ipBucketKey } from '../stream/quota.service';
import { sendError } from './error-response';
import { RateLimiter } from './rate-limiter';

/** Probes a load balancer or Prometheus sends without credentials, often and by design. */
function isAnonymousProbe(req: Request): boolean {
  return (
    (req.path.startsWith('/health/') || req.path === '/metrics') &&
    req.headers.authorization === undefined
  );
}

/**
 * The per-address rate limits of the REST API, applied to every HTTP request before routing,
 * authentication or any body is read (WebSocket upgrades have their own, in the upgrade gate).
 *
 * - Every request takes a token of its address's general budget (HTTP_RATE_LIMIT_PER_MIN).
 * - Every refused one (401/403) also takes one of its refused budget
 *   (HTTP_REFUSED_RATE_LIMIT_PER_MIN); while that is empty the address gets 429 before its token
 *   is checked, so a bad-token flood costs neither verification nor more than a trickle of audit.
 *
 * Addresses are the client's (TRUST_PROXY decides whether X-Forwarded-For is believed), IPv6 per
 * /64. A 429 has Retry-After and the JSON error body, and is audited as a refusal (aggregated per
 * address by the audit writer).
 */
export class RequestGate {
  private readonly general: RateLimiter;
  private readonly refused: RateLimiter;
  private readonly trust: TrustFn;

  constructor(
    private readonly config: AppConfig,
    private readonly audit: AuditWriter,
  ) {
    this.trust = compileTrust(config.TRUST_PROXY);
    this.general = new RateLimiter({
      perMin: config.HTTP_RATE_LIMIT_PER_MIN,
      maxKeys: config.HTTP_RATE_LIMIT_ADDRESSES_MAX,
    });
    this.refused = new RateLimiter({
      perMin: config.HTTP_REFUSED_RATE_LIMIT_PER_MIN,
      maxKeys: config.HTTP_RATE_LIMIT_ADDRESSES_MAX,
    });
  }

  /** Express middleware. */
  readonly handle = (req: Request, res: Response, next: NextFunction): void => {
    if (isAnonymousProbe(req)) {
      next();
      return;
    }
    const address = remoteAddressOf(req, this.trust);
    const key = ipBucketKey(address ?? 'unknown');
    const now = Date.now();
    const refusedWait = this.refused.check(key, now);
    const waitMs = refusedWait > 0 ? refusedWait : this.general.take(key, now);
    if (waitMs > 0) {
      this.recordRefusal(req, address);
      sendError(
        req,
        res,
        new AppError(
          ErrorCode.RateLimited,
          refusedWait > 0
            ? 'too many refused requests from this address; retry later'
            : 'too many requests from this address; retry later',
          { retryAfterS: waitMs / 1000 },
        ),
      );
      return;
    }
    res.once('finish', () => {
      if (res.statusCode === 401 || res.statusCode === 403) {
        this.refused.take(key, Date.now());
      }
    });
    next();
  };

  private recordRefusal(req: Request, address: string | null): void {
    this.audit.record(
      httpRefusal(req, {
        node: this.config.NODE_ID,
        remoteAddress: address,
        outcome: 'rejected_quota',
        error: ErrorCode.RateLimited,
      }),
    );
  }
}
