import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { sendError } from './error-response';

/** What a NODE_ROLE=worker answers where a session would start or send: none live here. */
export const NOT_A_GATEWAY = 'this node records sessions and serves no streams; use a gateway';

/**
 * On a worker: the session-writing routes (`POST /v1/sessions` and below: open, frames,
 * messages, close) answer 503 before anything is read, so a load balancer that sends them here
 * by mistake gets a retryable answer. Reads (sessions, recordings), admin, health and metrics
 * are served as on any node.
 */
export function workerGate(req: Request, res: Response, next: NextFunction): void {
  if (
    req.method === 'POST' &&
    (req.path === '/v1/sessions' || req.path.startsWith('/v1/sessions/'))
  ) {
    sendError(req, res, new AppError(ErrorCode.Unavailable, NOT_A_GATEWAY));
    return;
  }
  next();
}
