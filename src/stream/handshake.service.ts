import { OriginPolicy } from '../common/origin-policy';
import { Inject, Injectable } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { randomUUID } from 'node:crypto';
import { AuditWriter } from '../audit/audit-writer.service';
import type { AuditOutcome } from '../audit/audit.types';
import { hasScope, type Principal } from '../auth/scopes';
import { TicketsService } from '../auth/tickets.service';
import { TokenVerifier } from '../auth/token-verifier.service';
import { AppError, asAppError } from '../common/app-error';
import { ErrorCode, httpStatusOf } from '../common/error-code';
import { compileTrust, remoteAddressOf, type TrustFn } from '../common/remote-address';
import { APP_CONFIG, type AppConfig } from '../config/config';
import type { CloseReason } from '../protocol/close-codes';
import { QuotaService, type ConnectionSlot, type QuotaRejection } from './quota.service';

import { SUBPROTOCOL } from '../protocol/subprotocol';

export { SUBPROTOCOL };

/** An accepted handshake: who, from where, and the connection slot it holds. */
export interface AcceptedHandshake {
  connectionId: string;
  at: Date;
  principal: Principal;
  slot: ConnectionSlot;
  remoteAddress: string | null;
  userAgent: string | null;
  origin: string | null;
}

export interface RejectedHandshake {
  status: number;
  headers: Record<string, string>;
  body: { error: ErrorCode; message: string };
}

export type HandshakeVerdict =
  { ok: true; accepted: AcceptedHandshake } | ({ ok: false } & RejectedHandshake);

/** RFC 6455 section 4.1: a base64-encoded 16-byte nonce (the same rule as ws's). */
const KEY_PATTERN = /^[+/0-9A-Za-z]{22}==$/;
/** RFC 7230 token characters: what a subprotocol name may consist of. */
const TOKEN_PATTERN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** What is wrong with an upgrade request that `ws` would refuse, with the answer to give. */
export interface UpgradeProblem {
  status: 400 | 405 | 426;
  headers: Record<string, string>;
  message: string;
}

/**
 * The checks `ws`'s handleUpgrade makes before it answers 101, made here first so that a request
 * it would refuse is refused before it costs a token check, a rate hit or a quota slot.
 * Version mismatches get 426 with the versions spoken (RFC 6455 section 4.4).
 */
export function upgradeProblem(req: IncomingMessage): UpgradeProblem | null {
  if (req.method !== 'GET') {
    return { status: 405, headers: { Allow: 'GET' }, message: 'a WebSocket upgrade is a GET' };
  }
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
    return { status: 400, headers: {}, message: 'invalid Upgrade header' };
  }
  const key = req.headers['sec-websocket-key'];
  if (key === undefined || !KEY_PATTERN.test(key)) {
    return { status: 400, headers: {}, message: 'missing or invalid Sec-WebSocket-Key header' };
  }
  const version = req.headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') {
    return {
      status: 426,
      headers: { 'Sec-WebSocket-Version': '13, 8' },
      message: 'missing or unsupported Sec-WebSocket-Version header',
    };
  }
  const protocols = req.headers['sec-websocket-protocol'];
  if (protocols !== undefined && !validProtocolList(protocols)) {
    return { status: 400, headers: {}, message: 'invalid Sec-WebSocket-Protocol header' };
  }
  return null;
}

/** A comma-separated list of distinct tokens, as ws's subprotocol parser accepts it. */
function validProtocolList(header: string): boolean {
  const names = header.split(',').map((name) => name.replace(/^[ \t]+|[ \t]+$/g, ''));
  return names.every((name) => TOKEN_PATTERN.test(name)) && new Set(names).size === names.length;
}

/**
 * Decides a WebSocket upgrade before any 101 (spec section 2): the request's own form (what ws
 * would refuse), draining, per-IP handshake rate,
 * subprotocol, Origin, credentials (bearer header or single-use ticket), scope, then the node and
 * channel quotas. Every outcome is audited.
 */
@Injectable()
export class HandshakeService {
  private readonly trust: TrustFn;
  private readonly origins: OriginPolicy;
  draining = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly verifier: TokenVerifier,
    private readonly tickets: TicketsService,
    private readonly quotas: QuotaService,
    private readonly audit: AuditWriter,
  ) {
    this.trust = compileTrust(config.TRUST_PROXY);
    this.origins = new OriginPolicy(config.ALLOWED_ORIGINS);
  }

  async authorize(req: IncomingMessage): Promise<HandshakeVerdict> {
    const base = {
      connectionId: randomUUID(),
      at: new Date(),
      remoteAddress: remoteAddressOf(req, this.trust),
      userAgent: req.headers['user-agent']?.slice(0, 512) ?? null,
      origin: typeof req.headers.origin === 'string' ? req.headers.origin.slice(0, 512) : null,
    };
    let principal: Principal | null = null;
    const problem = upgradeProblem(req);
    if (problem !== null) {
      this.record(base, null, 'rejected_protocol', ErrorCode.BadRequest);
      return {
        ok: false,
        status: problem.status,
        headers: problem.headers,
        body: { error: ErrorCode.BadRequest, message: problem.message },
      };
    }
    try {
      if (this.draining) {
        throw new Rejection(
          'rejected_draining',
          new AppError(ErrorCode.Draining, 'this node is draining; reconnect', { retryAfterS: 1 }),
        );
      }
      const ipVerdict = await this.quotas.checkIpHandshake(base.remoteAddress ?? 'unknown');
      if (!ipVerdict.ok) {
        throw quotaRejection(ipVerdict);
      }
      if (!offersSubprotocol(req)) {
        throw new Rejection(
          'rejected_protocol',
          new AppError(ErrorCode.BadRequest, `offer the WebSocket subprotocol ${SUBPROTOCOL}`),
        );
      }
      if (base.origin !== null && !this.originAllowed(base.origin, req.headers.host)) {
        throw new Rejection(
          'rejected_origin',
          new AppError(ErrorCode.OriginNotAllowed, 'origin not allowed'),
        );
      }
      principal = await this.authenticate(req);
      if (!hasScope(principal, 'stream:publish')) {
        throw new Rejection(
          'rejected_auth',
          new AppError(ErrorCode.InsufficientScope, 'this needs the scope stream:publish'),
        );
      }
      const admitted = await this.quotas.admit({
        id: base.connectionId,
        channel: principal.channel,
        subject: principal.subject,
        remoteAddress: base.remoteAddress,
        since: base.at,
      });
      if (!admitted.ok || !admitted.slot) {
        throw quotaRejection(admitted);
      }
      const accepted: AcceptedHandshake = { ...base, principal, slot: admitted.slot };
      this.record(base, principal, 'accepted', null);
      return { ok: true, accepted };
    } catch (err) {
      const rejection = err instanceof Rejection ? err : authRejection(err);
      this.record(base, principal, rejection.outcome, rejection.error.code);
      const headers: Record<string, string> = {};
      if (rejection.error.code === ErrorCode.InvalidToken) {
        headers['WWW-Authenticate'] = 'Bearer error="invalid_token"';
      }
      if (rejection.error.extra.retryAfterS !== undefined) {
        headers['Retry-After'] = String(Math.max(1, Math.ceil(rejection.error.extra.retryAfterS)));
      }
      return {
        ok: false,
        status: httpStatusOf(rejection.error.code),
        headers,
        body: { error: rejection.error.code, message: rejection.error.message },
      };
    }
  }

  /**
   * An accepted handshake that never became a connection (the client went away during the
   * checks, or ws refused to finish the upgrade): its slot is released and its audit row closed,
   * as a connection's close would have done.
   */
  abandon(accepted: AcceptedHandshake, closeReason: CloseReason): void {
    accepted.slot.release();
    const closedAt = new Date();
    this.audit.record({
      kind: 'connection',
      id: accepted.connectionId,
      at: accepted.at,
      node: this.config.NODE_ID,
      transport: 'ws',
      remoteAddress: accepted.remoteAddress,
      userAgent: accepted.userAgent,
      origin: accepted.origin,
      subject: accepted.principal.subject,
      channel: accepted.principal.channel,
      outcome: 'accepted',
      error: null,
      sessionId: null,
      close: {
        closedAt,
        // No close frame was ever exchanged: 1006, as the WebSocket API reports it.
        closeCode: 1006,
        closeReason,
        durationMs: closedAt.getTime() - accepted.at.getTime(),
        bytesIn: 0,
        bytesOut: 0,
        framesIn: 0,
        framesOut: 0,
      },
    });
  }

  private async authenticate(req: IncomingMessage): Promise<Principal> {
    const header = req.headers.authorization;
    if (header !== undefined) {
      // RFC 7235: the scheme is case-insensitive, as the HTTP side (passport-jwt) treats it.
      const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(header);
      if (!match?.[1]) {
        throw new AppError(ErrorCode.InvalidToken, 'malformed authorization header');
      }
      return this.verifier.verify(match[1]);
    }
    const ticket = new URL(req.url ?? '/', 'http://localhost').searchParams.get('ticket');
    if (ticket) {
      return this.tickets.consume(ticket);
    }
    throw new AppError(ErrorCode.InvalidToken, 'missing bearer token or ticket');
  }

  private originAllowed(origin: string, host: string | undefined): boolean {
    return this.origins.allows(origin, host);
  }

  private record(
    base: Omit<AcceptedHandshake, 'principal' | 'slot'>,
    principal: Principal | null,
    outcome: AuditOutcome,
    error: ErrorCode | null,
  ): void {
    this.audit.record({
      kind: 'connection',
      id: base.connectionId,
      at: base.at,
      node: this.config.NODE_ID,
      transport: 'ws',
      remoteAddress: base.remoteAddress,
      userAgent: base.userAgent,
      origin: base.origin,
      subject: principal?.subject ?? null,
      channel: principal?.channel ?? null,
      outcome,
      error,
      sessionId: null,
    });
  }
}

class Rejection extends Error {
  constructor(
    readonly outcome: AuditOutcome,
    readonly error: AppError,
  ) {
    super(error.message);
  }
}

function quotaRejection(verdict: QuotaRejection): Rejection {
  if (verdict.reason === 'unavailable') {
    return new Rejection(
      'rejected_unavailable',
      new AppError(ErrorCode.DatabaseUnavailable, verdict.message, {
        retryAfterS: verdict.retryAfterS,
      }),
    );
  }
  return new Rejection(
    'rejected_quota',
    new AppError(
      verdict.status === 503 ? ErrorCode.NodeFull : ErrorCode.QuotaExceeded,
      verdict.message,
      {
        retryAfterS: verdict.retryAfterS,
      },
    ),
  );
}

/**
 * A failure that is not about the credentials (the database is down, a ticket cannot be redeemed)
 * is a 503 with Retry-After, audited `rejected_unavailable`, not a 401.
 */
function authRejection(err: unknown): Rejection {
  const error = asAppError(err);
  if (error.code === ErrorCode.Internal) {
    return new Rejection(
      'rejected_unavailable',
      new AppError(ErrorCode.Unavailable, 'credentials cannot be checked right now', {
        retryAfterS: 5,
      }),
    );
  }
  return new Rejection(
    error.code === ErrorCode.DatabaseUnavailable ? 'rejected_unavailable' : 'rejected_auth',
    error,
  );
}

function offersSubprotocol(req: IncomingMessage): boolean {
  const header = req.headers['sec-websocket-protocol'];
  return typeof header === 'string' && header.split(',').some((p) => p.trim() === SUBPROTOCOL);
}
