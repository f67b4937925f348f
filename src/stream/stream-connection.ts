import type { Logger } from '@nestjs/common';
import type { WebSocket } from 'ws';
import type { AuditWriter } from '../audit/audit-writer.service';
import type { Principal } from '../auth/scopes';
import type { TokenVerifier } from '../auth/token-verifier.service';
import { AppError, asAppError } from '../common/app-error';
import { closeCodeOf, ErrorCode } from '../common/error-code';
import type { AppConfig } from '../config/config';
import { CloseCode, type CloseReason } from '../protocol/close-codes';
import { ptsRefusal, readMediaHeader } from '../protocol/media-header';
import type { Closed, ServerMessage } from '../protocol/messages';
import type { OpenSession, Opened } from '../protocol/open-session.schema';
import type { SessionStore } from '../sessions/session-store.service';
import { FrameRateLimiter } from './frame-rate-limiter';
import type { AcceptedHandshake } from './handshake.service';
import type { QuotaService } from './quota.service';
import type { SessionRegistry } from './session-registry.service';
import type { SessionRuntime, SessionSink } from './session-runtime';
import type { ConnectionInfo } from '../admin/admin-api.schema';
export type { ConnectionInfo } from '../admin/admin-api.schema';

export interface ConnectionDeps {
  config: AppConfig;
  registry: SessionRegistry;
  store: SessionStore;
  audit: AuditWriter;
  verifier: TokenVerifier;
  quotas: QuotaService;
  logger: Logger;
  onClosed(connection: StreamConnection): void;
}

/** setTimeout cannot wait longer than 2^31-1 ms. */
const MAX_TIMER_MS = 2_147_483_647;
/** After a close frame, a peer that does not answer is cut off this much later. */
const CLOSE_GRACE_MS = 2_000;

/**
 * One WebSocket connection: its principal and credential expiry, liveness, counters for the
 * audit, the per-connection frame-rate/bandwidth quota, and the session it carries. It is the
 * session's sink while attached.
 */
export class StreamConnection implements SessionSink {
  readonly transport = 'ws' as const;
  readonly connectionId: string;
  /** Last sign of life (any message or pong), for the heartbeat. */
  lastSeen = Date.now();
  private principal: Principal;
  private runtime: SessionRuntime | null = null;
  private sessionId: string | null = null;
  private limiter: FrameRateLimiter | null = null;
  private expiryTimer: NodeJS.Timeout | undefined;
  private closing = false;
  /** An open or resume is under way: a second one must not bind another session meanwhile. */
  private binding = false;
  private closeReason: CloseReason | null = null;
  /** The code this side closed with; the audit records it rather than the peer's echo. */
  private sentCloseCode: number | null = null;
  /** The admin who kicked this connection, for its audit row. */
  private closedBy: string | null = null;
  private bytesIn = 0;
  private bytesOut = 0;
  private framesIn = 0;
  private framesOut = 0;
  private controlTokens: number;
  private controlRefillAt = Date.now();

  constructor(
    readonly ws: WebSocket,
    private readonly handshake: AcceptedHandshake,
    private readonly deps: ConnectionDeps,
  ) {
    this.connectionId = handshake.connectionId;
    this.principal = handshake.principal;
    this.controlTokens = deps.config.CONTROL_MESSAGES_PER_SEC;
    this.armExpiry();
    ws.on('pong', () => {
      this.lastSeen = Date.now();
    });
    ws.on('error', (err: Error & { code?: string }) => {
      // ws reports oversized and malformed frames here and closes by itself (1009 / 1002).
      const tooLarge = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
      this.closeReason ??= tooLarge ? 'message_too_large' : 'protocol_error';
      this.sentCloseCode ??= tooLarge ? CloseCode.TooLarge : 1002;
    });
    ws.once('close', (code: number) => void this.onClosed(code));
  }

  get subject(): string {
    return this.principal.subject;
  }

  get channel(): string {
    return this.principal.channel;
  }

  /** A snapshot for the admin API (counters as of now). */
  info(): ConnectionInfo {
    return {
      id: this.connectionId,
      node: this.deps.config.NODE_ID,
      sessionId: this.sessionId,
      subject: this.principal.subject,
      channel: this.principal.channel,
      remoteAddress: this.handshake.remoteAddress,
      transport: this.transport,
      since: this.handshake.at.toISOString(),
      framesIn: this.framesIn,
      bytesIn: this.bytesIn,
      lastSeen: new Date(this.lastSeen).toISOString(),
    };
  }

  /** A binary media message: straight from the socket, no JSON, no await. */
  onMedia(data: Buffer): void {
    const now = Date.now();
    this.lastSeen = now;
    this.bytesIn += data.length;
    this.framesIn++;
    const runtime = this.runtime;
    if (runtime === null || this.limiter === null) {
      this.end(CloseCode.Protocol, 'protocol_error', 'media before opened');
      return;
    }
    const header = readMediaHeader(data);
    if (typeof header === 'string') {
      this.end(CloseCode.Protocol, 'protocol_error', `bad media header: ${header}`);
      return;
    }
    if (header.key && !runtime.compressed) {
      this.end(CloseCode.Protocol, 'protocol_error', 'bad media header: bad_flags');
      return;
    }
    const quota = this.limiter.onFrame(data.length, now);
    if (quota !== 'ok') {
      if (quota === 'exceeded') {
        this.end(CloseCode.Quota, 'quota_exceeded', 'frame-rate or bandwidth quota exceeded');
        return;
      }
      this.send({ type: 'flow', maxFps: this.limiter.maxFps, reason: 'quota' });
    }
    const result = runtime.ingest(data, header);
    if (result === 'refused') {
      this.send({
        type: 'error',
        code: ErrorCode.BadFrame,
        message: runtime.refusal,
        seq: header.seq,
      });
    } else if (result === 'gap') {
      this.end(CloseCode.Protocol, 'protocol_error', `seq gap at ${header.seq}`);
    } else if (result === 'implausible_pts') {
      this.send({
        type: 'error',
        code: ErrorCode.ValidationFailed,
        message: ptsRefusal(header.seq, header.pts),
        seq: header.seq,
      });
    } else if (result === 'failed') {
      this.end(CloseCode.Internal, 'internal_error', 'session storage failed');
    }
    // 'stopping': the disk is full; the runtime sends the final ack and 1013 itself.
  }

  /** Token bucket for control messages: CONTROL_MESSAGES_PER_SEC, bursts up to one second's worth. */
  allowControlMessage(): boolean {
    const now = Date.now();
    const rate = this.deps.config.CONTROL_MESSAGES_PER_SEC;
    this.controlTokens = Math.min(
      rate,
      this.controlTokens + ((now - this.controlRefillAt) * rate) / 1000,
    );
    this.controlRefillAt = now;
    if (this.controlTokens < 1) {
      return false;
    }
    this.controlTokens -= 1;
    return true;
  }

  /** Any text message counts as a sign of life and toward the counters. */
  onText(bytes: number): void {
    this.lastSeen = Date.now();
    this.bytesIn += bytes;
  }

  open(body: OpenSession): Promise<ServerMessage> {
    return this.bind(() => this.deps.registry.open(this.principal, body, this));
  }

  /** `opened`, then (compressed video) a `keyframe` request: sent here, in that order. */
  async resume(sessionId: string, resumeToken: string): Promise<null> {
    const opened = await this.bind(() =>
      this.deps.registry.resume(this.principal, sessionId, resumeToken, this),
    );
    this.send(opened);
    this.runtime?.resumedOn(this);
    return null;
  }

  async message(id: string, body: unknown): Promise<ServerMessage> {
    const runtime = this.requireSession();
    await runtime.storeMessage('in', id, body, this.principal.subject);
    return { type: 'msg.ack', id };
  }

  /** A fresh token for a long session: same subject and channel, later expiry. */
  async refresh(token: string): Promise<null> {
    const fresh = await this.deps.verifier.verify(token);
    if (fresh.subject !== this.principal.subject || fresh.channel !== this.principal.channel) {
      throw new AppError(
        ErrorCode.InsufficientScope,
        'the new token is for another subject or channel',
      );
    }
    if (!fresh.scopes.includes('stream:publish')) {
      throw new AppError(ErrorCode.InsufficientScope, 'the new token lacks stream:publish');
    }
    this.principal = fresh;
    this.armExpiry();
    return null;
  }

  async close(reason: string | undefined): Promise<null> {
    const runtime = this.requireSession();
    // No more frames for this session once `close` arrived.
    this.runtime = null;
    let closed: Closed;
    try {
      closed = await this.deps.registry.closeSession(
        runtime,
        reason ? `client: ${reason}` : 'client_close',
      );
    } catch (err) {
      // The socket may have closed during the await, finding no session to detach: then the
      // session is let go of here rather than bound again to a dead connection.
      if (this.closing) {
        this.letGo(runtime);
      } else {
        this.runtime = runtime;
      }
      throw err;
    }
    this.send({ type: 'closed', ...closed });
    this.end(CloseCode.Normal, 'normal', 'session closed');
    return null;
  }

  /** Drain: everything received is durable and acked, then 1012 so the client resumes elsewhere. */
  async shutdown(): Promise<void> {
    const runtime = this.runtime;
    if (runtime) {
      await runtime.finalAck().catch(() => undefined);
    }
    this.end(CloseCode.Restart, 'server_shutdown', 'server restarting');
  }

  /** Reports a handler error: recoverable ones as `error`, the rest close the connection. */
  reportError(err: unknown): void {
    const appError = asAppError(err);
    if (appError.code === ErrorCode.Internal) {
      this.deps.logger.error({ err, connectionId: this.connectionId }, 'stream handler failed');
    } else if (appError.code === ErrorCode.DatabaseUnavailable) {
      this.deps.logger.warn(
        { err: err instanceof Error ? err.message : String(err), connectionId: this.connectionId },
        'database unavailable under a stream handler',
      );
    }
    const code = closeCodeOf(appError.code);
    if (code === null) {
      this.send({ type: 'error', code: appError.code, message: appError.message });
      return;
    }
    this.end(code, reasonFor(code, appError.code), appError.message);
  }

  /**
   * An administrator's disconnect: 4003, and the session is detached now (interrupted, its resume
   * window running) instead of when the peer answers the close, so the answer says what is true.
   * Also lets go of a session that is still bound to this connection after its socket closed.
   */
  async kick(runtime: SessionRuntime): Promise<void> {
    this.end(CloseCode.Kicked, 'kicked', 'disconnected by an administrator');
    if (this.runtime === runtime) {
      this.runtime = null;
    }
    await this.deps.registry.detach(runtime, this, this.closeReason ?? 'kicked');
  }

  /**
   * An administrator closes this connection: 4003, and its audit row names the admin. The session
   * it carries (or `runtime`, one still bound to it) is detached at once, as by kick(); one being
   * opened or resumed meanwhile is let go of when that ends (see bind()).
   */
  async kickBy(admin: string, runtime: SessionRuntime | null = this.runtime): Promise<void> {
    if (!this.closing) {
      this.closedBy = admin;
    }
    if (runtime !== null) {
      await this.kick(runtime);
    } else {
      this.end(CloseCode.Kicked, 'kicked', 'disconnected by an administrator');
    }
  }

  /** Whether the connection is closing or closed (a kick then changes nothing). */
  get isClosing(): boolean {
    return this.closing;
  }

  // SessionSink

  ack(seq: number): void {
    this.sendRaw(`{"type":"ack","seq":${seq}}`);
  }

  send(message: ServerMessage): void {
    this.sendRaw(JSON.stringify(message));
  }

  replaced(): void {
    this.runtime = null;
    this.end(CloseCode.Replaced, 'replaced', 'session resumed on another connection');
  }

  throttle(maxFps: number | null, reason: string): void {
    const limiter = this.limiter;
    if (limiter === null) {
      return;
    }
    const quota = this.deps.quotas.limitsFor(this.principal.channel).maxFps;
    const fps = Math.min(quota, maxFps ?? quota);
    limiter.setMaxFps(fps, Date.now());
    this.send({ type: 'flow', maxFps: fps, reason });
  }

  failed(error: AppError): void {
    this.runtime = null;
    const code = closeCodeOf(error.code) ?? CloseCode.Internal;
    this.end(code, reasonFor(code, error.code), error.message);
  }

  /** Starts the close handshake; a peer that does not answer is cut off after a grace period. */
  end(code: CloseCode, reason: CloseReason, message = ''): void {
    if (this.closing) {
      return;
    }
    this.closing = true;
    this.closeReason ??= reason;
    this.sentCloseCode ??= code;
    this.ws.close(code, message.slice(0, 120));
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  /**
   * Runs an open or resume and binds its session to this connection. The registry attaches the
   * session to this connection before its awaits end; if the socket closed (or began to close)
   * meanwhile, its close found no session to detach, so the session is detached here instead of
   * being bound to a connection that will never carry a frame or a close again.
   */
  private async bind(attach: () => Promise<Opened>): Promise<ServerMessage> {
    this.assertNoSession();
    this.binding = true;
    let opened: Opened;
    try {
      opened = await attach();
    } finally {
      this.binding = false;
    }
    const runtime = this.deps.registry.get(opened.sessionId);
    if (!runtime) {
      throw new AppError(ErrorCode.UnknownSession, 'session ended');
    }
    if (this.closing) {
      this.sessionId = runtime.id;
      this.letGo(runtime);
      throw new AppError(ErrorCode.InvalidState, 'the connection closed before the session opened');
    }
    return this.attached(runtime, opened);
  }

  private attached(runtime: SessionRuntime, opened: Opened): ServerMessage {
    this.runtime = runtime;
    this.sessionId = runtime.id;
    this.handshake.slot.bindSession(runtime.id);
    const limits = this.deps.quotas.limitsFor(this.principal.channel);
    this.limiter = new FrameRateLimiter({
      maxFps: limits.maxFps,
      maxKbps: limits.maxKbps,
      graceMs: this.deps.config.STREAM_FLOW_GRACE_MS,
    });
    // A session resumed under a cap (capacity, image cost) stays under it.
    const ceiling = runtime.fpsCeiling;
    const maxFps = Math.min(limits.maxFps, ceiling?.maxFps ?? limits.maxFps);
    if (maxFps < limits.maxFps) {
      this.limiter.setMaxFps(maxFps, Date.now());
    }
    return { type: 'opened', ...opened, limits: { ...opened.limits, maxFps } };
  }

  private assertNoSession(): void {
    if (this.runtime !== null || this.binding) {
      throw new AppError(ErrorCode.InvalidState, 'this connection already carries a session');
    }
    if (this.closing) {
      throw new AppError(ErrorCode.InvalidState, 'the connection is closing');
    }
  }

  /** The session leaves this connection: interrupted, its resume window running. */
  private letGo(runtime: SessionRuntime): void {
    const reason = this.closeReason ?? 'connection_lost';
    void this.deps.registry
      .detach(runtime, this, reason)
      .catch((err: unknown) =>
        this.deps.logger.warn({ err, sessionId: runtime.id }, 'detach failed'),
      );
  }

  private requireSession(): SessionRuntime {
    if (this.runtime === null) {
      throw new AppError(ErrorCode.InvalidState, 'open or resume a session first');
    }
    return this.runtime;
  }

  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    const ms = Math.min(MAX_TIMER_MS, Math.max(0, this.principal.expiresAt.getTime() - Date.now()));
    this.expiryTimer = setTimeout(
      () => this.end(CloseCode.TokenExpired, 'token_expired', 'access token expired'),
      ms,
    );
    this.expiryTimer.unref();
  }

  private sendRaw(text: string): void {
    if (this.ws.readyState !== this.ws.OPEN) {
      return;
    }
    this.bytesOut += text.length;
    this.framesOut++;
    this.ws.send(text);
  }

  private async onClosed(code: number): Promise<void> {
    clearTimeout(this.expiryTimer);
    this.closing = true;
    this.handshake.slot.release();
    this.deps.onClosed(this);
    const runtime = this.runtime;
    this.runtime = null;
    const reason: CloseReason =
      this.closeReason ?? (code === 1006 ? 'connection_lost' : 'client_closed');
    // An open or resume still under way reads it when its await ends (see bind()).
    this.closeReason = reason;
    if (runtime) {
      await this.deps.registry
        .detach(runtime, this, reason)
        .catch((err: unknown) =>
          this.deps.logger.warn({ err, sessionId: runtime.id }, 'detach failed'),
        );
    }
    const closedAt = new Date();
    const { principal } = this;
    this.deps.logger.log(
      {
        connectionId: this.connectionId,
        sessionId: this.sessionId,
        code: this.sentCloseCode ?? code,
        reason,
        durationMs: closedAt.getTime() - this.handshake.at.getTime(),
      },
      'connection closed',
    );
    this.deps.audit.record({
      kind: 'connection',
      id: this.connectionId,
      at: this.handshake.at,
      node: this.deps.config.NODE_ID,
      transport: 'ws',
      remoteAddress: this.handshake.remoteAddress,
      userAgent: this.handshake.userAgent,
      origin: this.handshake.origin,
      subject: principal.subject,
      channel: principal.channel,
      outcome: 'accepted',
      error: null,
      sessionId: this.sessionId,
      close: {
        closedAt,
        closeCode: this.sentCloseCode ?? code,
        closeReason: reason,
        durationMs: closedAt.getTime() - this.handshake.at.getTime(),
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        framesIn: this.framesIn,
        framesOut: this.framesOut,
        closedBy: this.closedBy,
      },
    });
  }
}

/** The audit reason of a close code; `error` is the error behind it, when there is one. */
function reasonFor(code: CloseCode, error?: ErrorCode): CloseReason {
  switch (code) {
    case CloseCode.Normal:
      return 'normal';
    case CloseCode.TooLarge:
      return 'message_too_large';
    case CloseCode.Internal:
      return 'internal_error';
    case CloseCode.Restart:
      return 'server_shutdown';
    case CloseCode.TryAgainLater:
      // Four causes share 1013; the audit names which.
      if (error === ErrorCode.InsufficientStorage) {
        return 'insufficient_storage';
      }
      if (error === ErrorCode.SessionBusy) {
        return 'session_busy';
      }
      return error === ErrorCode.OverCapacity ? 'over_capacity' : 'database_unavailable';
    case CloseCode.Protocol:
      return 'protocol_error';
    case CloseCode.TokenExpired:
      return 'token_expired';
    case CloseCode.Kicked:
      return 'kicked';
    case CloseCode.UnknownSession:
      return 'unknown_session';
    case CloseCode.HeartbeatTimeout:
      return 'heartbeat_timeout';
    case CloseCode.Replaced:
      return 'replaced';
    case CloseCode.Quota:
      return 'quota_exceeded';
  }
}
