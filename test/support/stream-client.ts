import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import { encodeMediaMessage, FLAG_KEY, Track } from '../../src/protocol/media-header';
import type { ServerMessage } from '../../src/protocol/messages';

export interface ConnectOptions {
  token?: string;
  ticket?: string;
  origin?: string;
  protocol?: string | null;
  headers?: Record<string, string>;
  autoPong?: boolean;
}

export interface Rejected {
  status: number;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

function wsUrl(base: string, ticket?: string): string {
  const url = new URL('/v1/stream', base.replace(/^http/, 'ws'));
  if (ticket !== undefined) {
    url.searchParams.set('ticket', ticket);
  }
  return url.toString();
}

function socket(base: string, o: ConnectOptions): WebSocket {
  const headers: Record<string, string> = { ...o.headers };
  if (o.token !== undefined) {
    headers.authorization = `Bearer ${o.token}`;
  }
  const protocols = o.protocol === null ? [] : [o.protocol ?? 'framegate.v1'];
  return new WebSocket(wsUrl(base, o.ticket), protocols, {
    headers,
    origin: o.origin,
    autoPong: o.autoPong ?? true,
    perMessageDeflate: false,
  });
}

/** Attempts a handshake that must be refused; resolves with the HTTP answer. */
export function rejectedHandshake(base: string, o: ConnectOptions): Promise<Rejected> {
  return new Promise((resolve, reject) => {
    const ws = socket(base, o);
    ws.on('open', () => {
      ws.close();
      reject(new Error('handshake was accepted'));
    });
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: text ? JSON.parse(text) : {},
        });
        ws.terminate();
      });
    });
    ws.on('error', () => undefined);
  });
}

/** A test client of the stream protocol over a real `ws` socket. */
export class StreamClient {
  readonly messages: ServerMessage[] = [];
  /** The highest ack seen so far, whether or not it was taken with `next`. */
  maxAck = 0;
  closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        const message = JSON.parse(data.toString()) as ServerMessage;
        if (message.type === 'ack') {
          this.maxAck = Math.max(this.maxAck, message.seq);
        }
        this.messages.push(message);
        this.waiters.splice(0).forEach((w) => w());
      }
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.waiters.splice(0).forEach((w) => w());
      });
    });
    ws.on('error', () => undefined);
  }

  static connect(base: string, o: ConnectOptions): Promise<StreamClient> {
    return new Promise((resolve, reject) => {
      const ws = socket(base, o);
      const client = new StreamClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`handshake refused: ${res.statusCode}`)),
      );
      ws.once('error', reject);
    });
  }

  send(message: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message));
  }

  sendFrame(seq: number, pts: number, payload: Buffer, track: Track = Track.Video): void {
    this.ws.send(encodeMediaMessage(track, seq, pts, payload));
  }

  /** A compressed video chunk: flag bit 0 marks a key frame. */
  sendChunk(seq: number, pts: number, chunk: Buffer, key: boolean): void {
    this.ws.send(encodeMediaMessage(Track.Video, seq, pts, chunk, key ? FLAG_KEY : 0));
  }

  /** The next message of a type not yet taken (messages are consumed in order). */
  async next<T extends ServerMessage['type']>(
    type: T,
    timeoutMs = 30_000,
  ): Promise<Extract<ServerMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.messages.findIndex((m) => m.type === type);
      if (i !== -1) {
        return this.messages.splice(i, 1)[0] as Extract<ServerMessage, { type: T }>;
      }
      if (this.ws.readyState === WebSocket.CLOSED) {
        throw new Error(`socket closed while waiting for ${type}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no ${type} within ${timeoutMs} ms; got ${JSON.stringify(this.messages)}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits until an ack of at least `seq` arrives; returns every ack seen on the way. */
  async acksUntil(seq: number, timeoutMs = 30_000): Promise<number[]> {
    const seen: number[] = [];
    if (this.maxAck >= seq) {
      return [this.maxAck];
    }
    for (;;) {
      const ack = await this.next('ack', timeoutMs);
      seen.push(ack.seq);
      if (ack.seq >= seq) {
        return seen;
      }
    }
  }

  async open(body: Record<string, unknown> = { video: { width: 320, height: 240, fps: 10 } }) {
    this.send({ type: 'open', ...body });
    return this.next('opened');
  }

  close(): void {
    this.ws.close();
  }
}

/** A small distinguishable payload for frame n. */
export function payloadFor(n: number, size = 256): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32BE(n, 0);
  b.fill(n % 251, 4);
  return b;
}
