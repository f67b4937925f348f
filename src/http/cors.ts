import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { OriginPolicy } from '../common/origin-policy';
import { sendError } from './error-response';

/** Methods the REST API answers. */
const METHODS = 'GET, HEAD, POST, PUT, DELETE';
/** Request headers a browser client sends: the bearer token, JSON, the resume token, ranges. */
const ALLOWED_HEADERS = 'authorization, content-type, x-resume-token, range, if-none-match';
/** Response headers a browser client reads: recordings (ETag, ranges), backoff (Retry-After). */
const EXPOSED_HEADERS =
  'ETag, Content-Range, Accept-Ranges, Content-Length, Retry-After, X-Request-Id';
/** How long a browser may cache a preflight's answer. */
const PREFLIGHT_MAX_AGE_S = 600;

/**
 * CORS for every REST route, by ALLOWED_ORIGINS (and the node's own origin). An allowed origin
 * gets `Access-Control-Allow-Origin` naming it, on every answer, errors and 429s included, so a
 * page can read why it was refused. A preflight is answered here, before rate limits and
 * authentication (it carries no credentials): 204 with the grant for an allowed origin, 403
 * `origin_not_allowed` without one for any other. Tokens travel in `Authorization`, never in
 * cookies, so no credentials are allowed.
 */
export function cors(allowedOrigins: readonly string[]) {
  const policy = new OriginPolicy(allowedOrigins);
  return (req: Request, res: Response, next: NextFunction): void => {
    const origin = req.headers.origin;
    if (origin === undefined) {
      next();
      return;
    }
    res.vary('Origin');
    const allowed = policy.allows(origin, req.headers.host);
    if (allowed) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Expose-Headers', EXPOSED_HEADERS);
    }
    const preflight =
      req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (!preflight) {
      next();
      return;
    }
    if (!allowed) {
      sendError(
        req,
        res,
        new AppError(ErrorCode.OriginNotAllowed, 'this origin is not in ALLOWED_ORIGINS'),
      );
      return;
    }
    res.setHeader('Access-Control-Allow-Methods', METHODS);
    res.setHeader('Access-Control-Allow-Headers', ALLOWED_HEADERS);
    res.setHeader('Access-Control-Max-Age', String(PREFLIGHT_MAX_AGE_S));
    res.vary('Access-Control-Request-Headers');
    res.statusCode = 204;
    res.end();
  };
}
