import {
  createServer,
  type IncomingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { waitFor } from './wait';

/** One request the receiver got, body byte for byte, and what it answered. */
export interface ReceivedWebhook {
  /** Date.now() when its body had arrived. */
  at: number;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  rawBody: Buffer;
  /** The Framegate-Webhook-Id header. */
  webhookId: string | undefined;
  /** The status answered; null when the responder hung or dropped the connection. */
  status: number | null;
}

/** How to answer: a status (with an optional body and headers), or `hang` / `reset`. */
export type Answer =
  number | { status: number; body?: string; headers?: Record<string, string> } | 'hang' | 'reset';

/** Chooses the answer to the n-th request (1-based) on a path. */
export type Responder = (request: ReceivedWebhook, n: number) => Answer;

/**
 * A webhook receiver on 127.0.0.1 for tests: records every request and answers it as the
 * responder of its path says (200 by default). Count deliveries with `forId`.
 */
export class WebhookReceiver {
  readonly received: ReceivedWebhook[] = [];
  private readonly responders = new Map<string, Responder>();
  private readonly counts = new Map<string, number>();
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static async start(): Promise<WebhookReceiver> {
    const server = createServer();
    const receiver = new WebhookReceiver(server);
    server.on('connection', (socket) => {
      receiver.sockets.add(socket);
      socket.on('close', () => receiver.sockets.delete(socket));
    });
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () =>
        receiver.answer(req.method ?? '', req.url ?? '', req.headers, chunks, res),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** The URL of a path on this receiver. */
  url(path = '/hook'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Sets how a path answers from now on. */
  on(path: string, responder: Responder): void {
    this.responders.set(path, responder);
  }

  /** The requests that carried this Framegate-Webhook-Id. */
  forId(webhookId: string): ReceivedWebhook[] {
    return this.received.filter((r) => r.webhookId === webhookId);
  }

  async waitFor(webhookId: string, count: number, timeoutMs = 60_000): Promise<ReceivedWebhook[]> {
    await waitFor(
      () => this.forId(webhookId).length >= count,
      timeoutMs,
      `${count} requests for ${webhookId}`,
    );
    return this.forId(webhookId);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) {
      socket.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private answer(
    method: string,
    path: string,
    headers: IncomingHttpHeaders,
    chunks: Buffer[],
    res: ServerResponse,
  ): void {
    const header = headers['framegate-webhook-id'];
    const request: ReceivedWebhook = {
      at: Date.now(),
      method,
      path,
      headers,
      rawBody: Buffer.concat(chunks),
      webhookId: typeof header === 'string' ? header : undefined,
      status: null,
    };
    this.received.push(request);
    const n = (this.counts.get(path) ?? 0) + 1;
    this.counts.set(path, n);
    const answer = (this.responders.get(path) ?? (() => 200))(request, n);
    if (answer === 'hang') {
      return;
    }
    if (answer === 'reset') {
      res.socket?.destroy();
      return;
    }
    const {
      status,
      body,
      headers: extra,
    } = typeof answer === 'number' ? { status: answer, body: '', headers: {} } : answer;
    request.status = status;
    res.writeHead(status, { 'content-type': 'text/plain', ...extra });
    res.end(body);
  }
}
