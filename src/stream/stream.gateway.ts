import {
  type ArgumentsHost,
  Catch,
  type CanActivate,
  type ExecutionContext,
  Injectable,
  UseFilters,
  UseGuards,
  type WsExceptionFilter,
} from '@nestjs/common';
import {
  ConnectedSocket,
  MessageBody,
  SubscribeMessage,
  WebSocketGateway,
} from '@nestjs/websockets';
import type { WebSocket } from 'ws';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import type { ClientMessage, ServerMessage } from '../protocol/messages';
import { connectionOf } from './stream-connections.service';
import type { StreamConnection } from './stream-connection';

type Of<T extends ClientMessage['type']> = Extract<ClientMessage, { type: T }>;

/** Errors of the handlers below become `error` messages or close codes (spec section 4). */
@Catch()
export class StreamExceptionFilter implements WsExceptionFilter {
  catch(exception: unknown, host: ArgumentsHost): void {
    const ws = host.switchToWs().getClient<WebSocket>();
    connectionOf(ws)?.reportError(exception);
  }
}

/** Per-connection rate of control messages; media has its own quota on the media path. */
@Injectable()
export class ControlRateGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const connection = connectionOf(context.switchToWs().getClient<WebSocket>());
    if (connection && !connection.allowControlMessage()) {
      throw new AppError(ErrorCode.QuotaExceeded, 'too many control messages; slow down');
    }
    return true;
  }
}

/**
 * The stream protocol's control messages (spec section 3). Connections are authenticated before
 * the upgrade (HandshakeService) and media frames never come through here (StreamWsAdapter).
 */
@WebSocketGateway({ path: '/v1/stream' })
@UseFilters(StreamExceptionFilter)
@UseGuards(ControlRateGuard)
export class StreamGateway {
  @SubscribeMessage('open')
  open(@ConnectedSocket() ws: WebSocket, @MessageBody() m: Of<'open'>): Promise<ServerMessage> {
    const { type: _type, ...body } = m;
    return connection(ws).open(body);
  }

  @SubscribeMessage('resume')
  resume(@ConnectedSocket() ws: WebSocket, @MessageBody() m: Of<'resume'>): Promise<null> {
    return connection(ws).resume(m.sessionId, m.resumeToken);
  }

  @SubscribeMessage('msg')
  msg(@ConnectedSocket() ws: WebSocket, @MessageBody() m: Of<'msg'>): Promise<ServerMessage> {
    return connection(ws).message(m.id, m.body);
  }

  @SubscribeMessage('ping')
  ping(@MessageBody() m: Of<'ping'>): ServerMessage {
    return m.t === undefined ? { type: 'pong' } : { type: 'pong', t: m.t };
  }

  @SubscribeMessage('auth')
  auth(@ConnectedSocket() ws: WebSocket, @MessageBody() m: Of<'auth'>): Promise<null> {
    return connection(ws).refresh(m.token);
  }

  @SubscribeMessage('close')
  close(@ConnectedSocket() ws: WebSocket, @MessageBody() m: Of<'close'>): Promise<null> {
    return connection(ws).close(m.reason);
  }
}

function connection(ws: WebSocket): StreamConnection {
  const c = connectionOf(ws);
  if (!c) {
    throw new AppError(ErrorCode.Internal, 'connection without state');
  }
  return c;
}
