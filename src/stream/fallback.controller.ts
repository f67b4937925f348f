import { Body, Controller, Headers, HttpCode, Param, Post, Req } from '@nestjs/common';
import type { Request } from 'express';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { ZodBodyPipe } from '../common/zod-body.pipe';
import { FRAMES_CONTENT_TYPE } from '../protocol/fallback-framing';
import { MEDIA_HEADER_BYTES, ptsRefusal, readMediaHeader } from '../protocol/media-header';
import { type Closed, messageBodySchema } from '../protocol/messages';
import { openSessionSchema, type OpenSession, type Opened } from '../protocol/open-session.schema';
import { SessionStore } from '../sessions/session-store.service';
import { SessionsService } from '../sessions/sessions.service';
import { SessionRegistry } from './session-registry.service';
import type { SessionSink } from './session-runtime';

export { FRAMES_CONTENT_TYPE };

/**
 * The HTTP transport of a session. Acks are the responses themselves, so it carries nothing
 * between requests; a session attached to it is interrupted after HEARTBEAT_TIMEOUT_MS idle.
 */
export const HTTP_SINK: SessionSink = {
  transport: 'http',
  connectionId: null,
  ack: () => undefined,
  send: () => undefined,
  replaced: () => undefined,
  failed: () => undefined,
  // The fallback has no per-request frame-rate quota to lower, and no channel to tell the client.
  throttle: () => undefined,
};

/**
 * The HTTP fallback (spec section 6): the same sessions, sequence rule and acks as the WebSocket,
 * through the same SessionRegistry and runtime.
 */
@Controller('v1/sessions')
export class FallbackController {
  constructor(
    private readonly registry: SessionRegistry,
    private readonly store: SessionStore,
    private readonly sessions: SessionsService,
  ) {}

  /** `open` over HTTP: 201 with the fields of `opened`. */
  @Post()
  @HttpCode(201)
  @RequireScopes('stream:publish')
  open(
    @CurrentPrincipal() principal: Principal,
    @Body(new ZodBodyPipe(openSessionSchema)) body: OpenSession,
  ): Promise<Opened> {
    return this.registry.open(principal, body, HTTP_SINK);
  }

  /**
   * A batch of media messages, each `u32 length` + message; 200 `{ack}` once all are durable.
   * Resends are dropped by the sequence rule; a gap is 409 after what came before it is stored.
   * An empty body just answers the current ack (what to resend from).
   */
  @Post(':id/frames')
  @HttpCode(200)
  @RequireScopes('stream:publish')
  async frames(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Headers('x-resume-token') resumeToken: string | undefined,
    @Req() req: Request,
  ): Promise<{ ack: number }> {
    if (!req.is(FRAMES_CONTENT_TYPE)) {
      throw new AppError(ErrorCode.UnsupportedMediaType, `send ${FRAMES_CONTENT_TYPE}`);
    }
    const body: unknown = req.body;
    const batch = Buffer.isBuffer(body) ? body : Buffer.alloc(0);
    const runtime = await this.registry.forHttp(principal, id, resumeToken ?? '', HTTP_SINK);
    let offset = 0;
    let problem: AppError | null = null;
    while (offset < batch.length) {
      if (batch.length - offset < 4) {
        problem = new AppError(
          ErrorCode.ProtocolError,
          `truncated length prefix at byte ${offset}`,
        );
        break;
      }
      const length = batch.readUInt32BE(offset);
      if (length > runtime.maxFrameBytes) {
        problem = new AppError(
          ErrorCode.PayloadTooLarge,
          `message at byte ${offset} is larger than ${runtime.maxFrameBytes} bytes`,
        );
        break;
      }
      if (length <= MEDIA_HEADER_BYTES || offset + 4 + length > batch.length) {
        problem = new AppError(
          ErrorCode.ProtocolError,
          `truncated or empty message at byte ${offset}`,
        );
        break;
      }
      // A view, not a copy: the spool keeps a reference until it is written.
      const message = batch.subarray(offset + 4, offset + 4 + length);
      offset += 4 + length;
      const header = readMediaHeader(message);
      if (typeof header === 'string') {
        problem = new AppError(ErrorCode.ProtocolError, `bad media header: ${header}`);
        break;
      }
      const result = runtime.ingest(message, header);
      if (result === 'gap') {
        problem = new AppError(
          ErrorCode.Conflict,
          `seq gap: got ${header.seq}, expected ${runtime.nextSeq}`,
        );
        break;
      }
      if (result === 'implausible_pts') {
        problem = new AppError(ErrorCode.ValidationFailed, ptsRefusal(header.seq, header.pts));
        break;
      }
      if (result === 'failed') {
        problem = new AppError(ErrorCode.Unavailable, 'session storage failed; resume later');
        break;
      }
      if (result === 'stopping') {
        problem = new AppError(ErrorCode.InsufficientStorage, 'the disk is full; resume later', {
          retryAfterS: 30,
        });
        break;
      }
    }
    const ack = await runtime.syncNow();
    if (problem) {
      throw problem;
    }
    return { ack };
  }

  /**
   * With `X-Resume-Token`: the client's `msg` over HTTP, stored once per id. Without it: the
   * business or admin API pushes a `msg` to the live client; stored either way.
   */
  @Post(':id/messages')
  @HttpCode(200)
  @RequireScopes('stream:publish', 'admin')
  async messages(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Headers('x-resume-token') resumeToken: string | undefined,
    @Body(new ZodBodyPipe(messageBodySchema)) message: { id: string; body: unknown },
  ): Promise<{ id: string; delivered?: boolean }> {
    if (resumeToken !== undefined) {
      const runtime = await this.registry.forHttp(principal, id, resumeToken, HTTP_SINK);
      await this.store.storeMessage(runtime.id, 'in', message.id, message.body, principal.subject);
      return { id: message.id };
    }
    // The owner (with stream:publish, by the guard) or an admin; anyone else gets 404.
    const session = await this.sessions.findVisible(principal, id);
    await this.store.storeMessage(session.id, 'out', message.id, message.body, principal.subject);
    const sink = this.registry.get(session.id)?.attached;
    const delivered = sink?.transport === 'ws';
    if (delivered) {
      sink.send({ type: 'msg', id: message.id, body: message.body });
    }
    return { id: message.id, delivered };
  }

  /** `close` over HTTP: 200 with the fields of `closed`. */
  @Post(':id/close')
  @HttpCode(200)
  @RequireScopes('stream:publish')
  async close(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Headers('x-resume-token') resumeToken: string | undefined,
  ): Promise<Closed> {
    const runtime = await this.registry.forHttp(principal, id, resumeToken ?? '', HTTP_SINK);
    return this.registry.closeSession(runtime, 'client_close_http');
  }
}
