import { Body, Controller, Headers, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import type { Request } from 'express';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { AppError, asAppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { ZodBodyPipe } from '../common/zod-body.pipe';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { BodyReader } from '../http/body-reader';
import { JsonBody } from '../http/json-body.interceptor';
import { FRAMES_CONTENT_TYPE } from '../protocol/fallback-framing';
import { type FramesProblem, FramesSplitter } from '../protocol/frames-splitter';
import { ptsRefusal, readMediaHeader } from '../protocol/media-header';
import {
  type Closed,
  closedSchema,
  type FramesAck,
  framesAckSchema,
  messageBodySchema,
} from '../protocol/messages';
import {
  openedSchema,
  openSessionSchema,
  type OpenSession,
  type Opened,
} from '../protocol/open-session.schema';
import { ApiDoc } from '../docs/api-doc';
import { z } from 'zod';
import { SessionsService } from '../sessions/sessions.service';
import { MessagePush } from './message-push.service';
import { SessionRegistry } from './session-registry.service';
import type { SessionRuntime, SessionSink } from './session-runtime';

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

/** Body bytes ingested between two syncs of the spool during one fallback upload. */
const SYNC_EVERY_BYTES = 1024 * 1024;
/** Refused chunks listed in one frames answer; the rest are counted in the session's rejects. */
const MAX_REFUSED_LISTED = 100;

/** The frames splitter's problems in the words the fallback has always used. */
function framingError(problem: FramesProblem): AppError {
  switch (problem.kind) {
    case 'too_large':
      return new AppError(
        ErrorCode.PayloadTooLarge,
        `message at byte ${problem.at} is larger than ${problem.maxBytes} bytes`,
      );
    case 'truncated_prefix':
      return new AppError(ErrorCode.ProtocolError, `truncated length prefix at byte ${problem.at}`);
    case 'empty':
    case 'truncated_message':
      return new AppError(
        ErrorCode.ProtocolError,
        `truncated or empty message at byte ${problem.at}`,
      );
  }
}

const RESUME_TOKEN_HEADER = {
  name: 'X-Resume-Token',
  description: "The session's resume token (from `opened`)",
  required: true,
};
/** The answer of `POST /v1/sessions/{id}/messages`. */
const messageStoredSchema = z.strictObject({
  id: z.string(),
  /**
   * Pushed by the API: whether the client's WebSocket, on whichever node holds it, received it
   * now. The message is stored either way.
   */
  delivered: z.boolean().optional(),
  /**
   * Why not, when not delivered: `not_connected` (no WebSocket carries the session), `timeout` or
   * `not_listening` (the holding node did not answer within CLUSTER_REQUEST_TIMEOUT_MS, or this
   * node cannot reach the others), `failed` (the holder could not send it).
   */
  reason: z.enum(['not_connected', 'timeout', 'not_listening', 'failed']).optional(),
});

/**
 * The HTTP fallback (spec section 6): the same sessions, sequence rule and acks as the WebSocket,
 * through the same SessionRegistry and runtime.
 */
@Controller('v1/sessions')
export class FallbackController {
  constructor(
    private readonly registry: SessionRegistry,
    private readonly sessions: SessionsService,
    private readonly pushes: MessagePush,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** `open` over HTTP: 201 with the fields of `opened`. */
  @Post()
  @HttpCode(201)
  @RequireScopes('stream:publish')
  @ApiDoc({
    summary: 'Open a session over HTTP (the fallback of `open`)',
    body: openSessionSchema,
    responses: { 201: openedSchema },
    errors: [400, 413, 415, 429, 503],
  })
  @JsonBody()
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
  @ApiDoc({
    summary: 'Store a batch of media messages; answers once all are durable',
    headers: [RESUME_TOKEN_HEADER],
    body: {
      contentType: FRAMES_CONTENT_TYPE,
      description:
        'Media messages, each a big-endian u32 length then the message (12-byte header + payload)',
    },
    responses: { 200: framesAckSchema },
    errors: [400, 404, 408, 409, 413, 415, 429, 503],
  })
  async frames(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Headers('x-resume-token') resumeToken: string | undefined,
    @Req() req: Request,
  ): Promise<z.output<typeof framesAckSchema>> {
    if (!req.is(FRAMES_CONTENT_TYPE)) {
      throw new AppError(ErrorCode.UnsupportedMediaType, `send ${FRAMES_CONTENT_TYPE}`);
    }
    // Checks a declared length before anything is read or the session touched.
    const body = new BodyReader(req, {
      maxBytes: this.config.HTTP_FRAMES_BODY_LIMIT_BYTES,
      idleMs: this.config.HTTP_BODY_IDLE_TIMEOUT_MS,
    });
    const runtime = await this.registry.forHttp(principal, id, resumeToken ?? '', HTTP_SINK);
    const refused: NonNullable<FramesAck['refused']> = [];
    const problem = await this.ingestBody(body, runtime, refused);
    const ack = await runtime.syncNow();
    if (problem) {
      throw problem;
    }
    const keyframe = runtime.keyframeWanted;
    return {
      ack,
      media: runtime.media,
      ...(refused.length > 0 ? { refused } : {}),
      ...(keyframe !== null ? { keyframe } : {}),
    };
  }

  /**
   * Streams the body into the session as it arrives, message by message; what was ingested
   * before a problem is kept (the caller syncs it), and the problem is returned to answer after.
   */
  private async ingestBody(
    body: BodyReader,
    runtime: SessionRuntime,
    refused: NonNullable<FramesAck['refused']>,
  ): Promise<AppError | null> {
    const splitter = new FramesSplitter(runtime.maxFrameBytes);
    let problem: AppError | null = null;
    const onMessage = (message: Buffer): boolean => {
      problem = this.ingestMessage(runtime, message, refused);
      return problem === null;
    };
    let unsynced = 0;
    for (;;) {
      let chunk: Buffer | null;
      try {
        chunk = await body.next();
      } catch (err) {
        // A limit, a silence or a cut-off within the body: keep what came before it.
        return asAppError(err);
      }
      // The upload spans awaits: the session may have been closed or taken over meanwhile.
      if (this.registry.get(runtime.id) !== runtime || runtime.attached !== HTTP_SINK) {
        return new AppError(
          ErrorCode.Conflict,
          'the session was closed or resumed elsewhere during the upload',
        );
      }
      if (chunk === null) {
        const framing = splitter.end();
        return framing ? framingError(framing) : null;
      }
      runtime.lastActivityAt = Date.now();
      const framing = splitter.push(chunk, onMessage);
      if (framing) {
        return framingError(framing);
      }
      if (problem) {
        return problem;
      }
      // The spool holds appended messages until they are written: syncing as the body goes
      // keeps that (and so the memory a large upload takes) bounded.
      unsynced += chunk.length;
      if (unsynced >= SYNC_EVERY_BYTES) {
        unsynced = 0;
        await runtime.syncNow();
      }
    }
  }

  /** One message of a fallback body through the session's sequence rule; a problem or null. */
  private ingestMessage(
    runtime: SessionRuntime,
    message: Buffer,
    refused: NonNullable<FramesAck['refused']>,
  ): AppError | null {
    const header = readMediaHeader(message);
    if (typeof header === 'string') {
      return new AppError(ErrorCode.ProtocolError, `bad media header: ${header}`);
    }
    if (header.key && !runtime.compressed) {
      return new AppError(
        ErrorCode.ProtocolError,
        'bad media header: bad_flags (the key-frame flag is for compressed video only)',
      );
    }
    const result = runtime.ingest(message, header);
    switch (result) {
      case 'refused':
        // Settled like a stored frame; the answer lists the first ones so the client can tell.
        if (refused.length < MAX_REFUSED_LISTED) {
          refused.push({ seq: header.seq, code: ErrorCode.BadFrame, message: runtime.refusal });
        }
        return null;
      case 'gap':
        return new AppError(
          ErrorCode.Conflict,
          `seq gap: got ${header.seq}, expected ${runtime.nextSeq}`,
        );
      case 'implausible_pts':
        return new AppError(ErrorCode.ValidationFailed, ptsRefusal(header.seq, header.pts));
      case 'failed':
        return new AppError(ErrorCode.Unavailable, 'session storage failed; resume later');
      case 'stopping':
        return new AppError(ErrorCode.InsufficientStorage, 'the disk is full; resume later', {
          retryAfterS: 30,
        });
      case 'stored':
      case 'duplicate':
        return null;
    }
  }

  /**
   * With `X-Resume-Token`: the client's `msg` over HTTP, stored once per id. Without it: the
   * business or admin API pushes a `msg` to the live client; stored either way.
   */
  @Post(':id/messages')
  @HttpCode(200)
  @RequireScopes('stream:publish', 'admin')
  @ApiDoc({
    summary: "Store a client's message (with X-Resume-Token), or push one to the live client",
    headers: [{ ...RESUME_TOKEN_HEADER, required: false }],
    body: messageBodySchema,
    responses: { 200: messageStoredSchema },
    errors: [400, 404, 413, 415, 429, 503],
  })
  @JsonBody()
  async messages(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Headers('x-resume-token') resumeToken: string | undefined,
    @Body(new ZodBodyPipe(messageBodySchema)) message: { id: string; body: unknown },
  ): Promise<z.output<typeof messageStoredSchema>> {
    if (resumeToken !== undefined) {
      const runtime = await this.registry.forHttp(principal, id, resumeToken, HTTP_SINK);
      await runtime.storeMessage('in', message.id, message.body, principal.subject);
      return { id: message.id };
    }
    // The owner (with stream:publish, by the guard) or an admin; anyone else gets 404.
    const session = await this.sessions.findVisible(principal, id);
    const pushed = await this.pushes.push(session.id, message.id, message.body, principal.subject);
    return { id: message.id, ...pushed };
  }

  /** `close` over HTTP: 200 with the fields of `closed`. */
  @Post(':id/close')
  @HttpCode(200)
  @RequireScopes('stream:publish')
  @ApiDoc({
    summary: 'Close a session over HTTP (the fallback of `close`); answers when it is recorded',
    headers: [RESUME_TOKEN_HEADER],
    responses: { 200: closedSchema },
    errors: [404, 429, 503],
  })
  async close(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Headers('x-resume-token') resumeToken: string | undefined,
  ): Promise<Closed> {
    const runtime = await this.registry.forHttp(principal, id, resumeToken ?? '', HTTP_SINK);
    return this.registry.closeSession(runtime, 'client_close_http');
  }
}
