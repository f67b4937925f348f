import type { INestApplicationContext } from '@nestjs/common';
import { WsAdapter } from '@nestjs/platform-ws';
import type { MessageMappingProperties } from '@nestjs/websockets';
import type { IncomingMessage, Server } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { EMPTY, type Observable } from 'rxjs';
import type { WebSocket, WebSocketServer } from 'ws';
import { exceedsJsonDepth, MAX_JSON_DEPTH } from '../common/json-depth';
import { parseOrThrow } from '../common/zod-body.pipe';
import { ErrorCode } from '../common/error-code';
import { NOT_A_GATEWAY } from '../http/worker-gate';
import type { AppConfig } from '../config/config';
import { CloseCode } from '../protocol/close-codes';
import { clientMessageSchema, MAX_CONTROL_BYTES } from '../protocol/messages';
import { HandshakeService, type RejectedHandshake, SUBPROTOCOL } from './handshake.service';
import { connectionOf, StreamConnections } from './stream-connections.service';

type WsServerWithPath = WebSocketServer & { path: string };

/**
 * Nest's `ws` adapter with framegate's two departures from it:
 * - the upgrade is decided before any 101 by the HandshakeService (auth, Origin, quotas), and a
 *   refusal is a real HTTP response with a JSON body;
 * - binary messages go straight to the connection's media path (no JSON, no Nest pipeline); text
 *   messages are parsed once, validated against the protocol schema, and dispatched by `type` to
 *   the gateway's @SubscribeMessage handlers (guards, filters and interceptors apply there).
 */
export class StreamWsAdapter extends WsAdapter {
  private readonly gate: HandshakeService;
  private readonly connections: StreamConnections;

  constructor(
    app: INestApplicationContext,
    private readonly config: AppConfig,
  ) {
    super(app);
    this.gate = app.get(HandshakeService);
    this.connections = app.get(StreamConnections);
  }

  override create(port: number, options: Record<string, unknown> = {}): WebSocketServer {
    return super.create(port, {
      ...options,
      maxPayload: this.config.MAX_FRAME_BYTES,
      perMessageDeflate: false,
      handleProtocols: (protocols: Set<string>) =>
        protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false,
    }) as WebSocketServer;
  }

  protected override ensureHttpServerExists(port: number, httpServer?: Server): Server | undefined {
    if (!httpServer || this.httpServersRegistry.has(port)) {
      return super.ensureHttpServerExists(port, httpServer);
    }
    this.httpServersRegistry.set(port, httpServer);
    httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.upgrade(port, req, socket, head);
    });
    return httpServer;
  }

  override bindMessageHandlers(
    client: WebSocket,
    handlers: MessageMappingProperties[],
    transform: (data: unknown) => Observable<unknown>,
  ): void {
    const byType = new Map(handlers.map((h) => [h.message as string, h]));
    client.on('message', (data: Buffer, isBinary: boolean) => {
      const connection = connectionOf(client);
      if (!connection) {
        return;
      }
      if (isBinary) {
        connection.onMedia(data);
        return;
      }
      connection.onText(data.length);
      if (data.length > MAX_CONTROL_BYTES) {
        connection.end(
          CloseCode.TooLarge,
          'message_too_large',
          'control messages are at most 64 KiB',
        );
        return;
      }
      // JSON.parse itself recurses; the pre-scan refuses depth before it can blow the stack.
      if (exceedsJsonDepth(data, MAX_JSON_DEPTH)) {
        connection.end(
          CloseCode.Protocol,
          'protocol_error',
          `JSON nested deeper than ${MAX_JSON_DEPTH} levels`,
        );
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(data.toString('utf8'));
      } catch {
        connection.end(CloseCode.Protocol, 'protocol_error', 'invalid JSON');
        return;
      }
      const type = (parsed as { type?: unknown } | null)?.type;
      const handler = typeof type === 'string' ? byType.get(type) : undefined;
      if (!handler) {
        connection.end(CloseCode.Protocol, 'protocol_error', 'unknown message type');
        return;
      }
      let message;
      try {
        message = parseOrThrow(clientMessageSchema, parsed, `${String(type)} message`);
      } catch (err) {
        connection.reportError(err);
        return;
      }
      const result = transform(handler.callback(message, type)) ?? EMPTY;
      result.subscribe({
        next: (response) => {
          if (response !== null && response !== undefined) {
            connection.send(response as Parameters<typeof connection.send>[0]);
          }
        },
        error: (err: unknown) => connection.reportError(err),
      });
    });
  }

  private async upgrade(
    port: number,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
  ): Promise<void> {
    socket.on('error', destroySocket);
    if (this.config.NODE_ROLE === 'worker') {
      reject(socket, {
        status: 503,
        headers: {},
        body: { error: ErrorCode.Unavailable, message: NOT_A_GATEWAY },
      });
      return;
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const servers = (this.wsServersRegistry.get(port) ?? []) as unknown as WsServerWithPath[];
    const server = servers.find((s) => s.path === path);
    if (!server) {
      reject(socket, {
        status: 404,
        headers: {},
        body: { error: 'not_found' as never, message: 'no WebSocket endpoint here' },
      });
      return;
    }
    // A client that goes away while its credentials and quotas are checked must not leave a slot
    // behind: its 'close' is noted here, and the slot of an accepted handshake given back below.
    let closedEarly = false;
    const noteClose = (): void => {
      closedEarly = true;
    };
    socket.once('close', noteClose);
    let verdict;
    try {
      verdict = await this.gate.authorize(req);
    } catch {
      reject(socket, {
        status: 500,
        headers: {},
        body: { error: 'internal_error' as never, message: 'internal error' },
      });
      return;
    } finally {
      socket.off('close', noteClose);
    }
    if (!verdict.ok) {
      reject(socket, verdict);
      return;
    }
    const accepted = verdict.accepted;
    if (closedEarly || socket.destroyed) {
      this.gate.abandon(accepted, 'connection_lost');
      return;
    }
    // Without verifyClient, ws finishes (or refuses) the upgrade synchronously: if the callback
    // has not run when handleUpgrade returns, it never will (the client half-closed meanwhile, or
    // the server is closing), and the handshake's slot and audit row are settled here.
    let upgraded = false;
    try {
      server.handleUpgrade(req, socket, head, (ws) => {
        upgraded = true;
        // From here `ws` handles socket errors.
        socket.off('error', destroySocket);
        this.connections.accept(ws, accepted);
        server.emit('connection', ws, req);
      });
    } finally {
      if (!upgraded) {
        this.gate.abandon(accepted, socket.destroyed ? 'connection_lost' : 'protocol_error');
        socket.destroy();
      }
    }
  }
}

/**
 * For a socket's 'error' (before ws takes it over) and 'finish' (after a refusal). Module-level
 * on purpose: a closure made inside `upgrade` would keep its whole context (the request with its
 * headers and bearer token, the head buffer) alive as long as the socket lives.
 */
function destroySocket(this: Duplex): void {
  this.destroy();
}

/**
 * A plain HTTP answer on the upgrade socket, then close: no 101 for a refused client. As ws's
 * abortHandshake does, the socket is destroyed once the answer is flushed: a client that never
 * reads or closes cannot keep it (and its fd) open.
 */
function reject(socket: Duplex, rejection: RejectedHandshake): void {
  if (socket.destroyed) {
    return;
  }
  const body = JSON.stringify(rejection.body);
  const headers = {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(body)),
    Connection: 'close',
    ...rejection.headers,
  };
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n');
  socket.once('finish', destroySocket);
  socket.end(
    `HTTP/1.1 ${rejection.status} ${STATUS_CODES[rejection.status] ?? ''}\r\n${head}\r\n\r\n${body}`,
  );
}
