import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AuditOutcome, ConnectionAuditRecord } from './audit.types';

/**
 * The audit record of a refused REST request: the guard's refused credentials and the rate
 * limiter's 429s alike, so both aggregate the same way (per address and reason).
 */
export function httpRefusal(
  req: IncomingMessage,
  refusal: {
    node: string;
    remoteAddress: string | null;
    outcome: AuditOutcome;
    error: string;
    principal?: { subject: string; channel: string };
  },
): ConnectionAuditRecord {
  return {
    kind: 'connection',
    id: randomUUID(),
    at: new Date(),
    node: refusal.node,
    transport: 'http',
    remoteAddress: refusal.remoteAddress,
    userAgent: req.headers['user-agent']?.slice(0, 512) ?? null,
    origin: req.headers.origin?.slice(0, 512) ?? null,
    subject: refusal.principal?.subject ?? null,
    channel: refusal.principal?.channel ?? null,
    outcome: refusal.outcome,
    error: refusal.error,
    sessionId: null,
  };
}
