import pino, { type Logger } from 'pino';
import type { AppConfig } from '../config/config';

/** Paths never logged: credentials in headers, and tickets in WebSocket URLs. */
export const REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-resume-token"]',
  'headers.authorization',
  'token',
  'ticket',
  'resumeToken',
];

export function createLogger(config: AppConfig): Logger {
  return pino({
    level: config.LOG_LEVEL,
    base: { node: config.NODE_ID },
    redact: { paths: REDACT, censor: '[redacted]' },
  });
}

/** Drops the query string, which may carry a ticket, from a URL before it is logged. */
export function stripQuery(url: string | undefined): string | undefined {
  if (url === undefined) {
    return undefined;
  }
  const i = url.indexOf('?');
  return i === -1 ? url : `${url.slice(0, i)}?…`;
}
