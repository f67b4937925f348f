/**
 * The baseline of bench:ingest: a plain `ws` server speaking the same framing as framegate, with
 * nothing durable. It parses the 12-byte media header, applies the sequence rule and the same
 * merged-ack rule, and answers `open` with an `opened`-shaped message; no auth, no spool file, no
 * fdatasync, no database.
 *
 * Usage: node -r ts-node/register/transpile-only bench/support/raw-server.ts
 * Env: ACK_INTERVAL_MS (200), ACK_MAX_FRAMES (50), MAX_FRAME_BYTES (2 MiB).
 * Prints `READY <port>` once listening on 127.0.0.1:<ephemeral>; stops on SIGTERM/SIGINT.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import { CloseCode } from '../../src/protocol/close-codes';
import { readMediaHeader } from '../../src/protocol/media-header';
import { MAX_CONTROL_BYTES } from '../../src/protocol/messages';

const SUBPROTOCOL = 'framegate.v1';
const ACK_INTERVAL_MS = Number(process.env.ACK_INTERVAL_MS ?? 200);
const ACK_MAX_FRAMES = Number(process.env.ACK_MAX_FRAMES ?? 50);
const MAX_FRAME_BYTES = Number(process.env.MAX_FRAME_BYTES ?? 2 * 1024 * 1024);
const MAX_FPS = 30;

/** One connection's session: the same counters framegate's runtime keeps for its acks. */
class RawSession {
  opened = false;
  private receivedSeq = 0;
  private ackedSeq = 0;
  private framesSinceAck = 0;
  private lastAckAt = 0;
  private ackTimer: NodeJS.Timeout | undefined;

  constructor(private readonly ws: WebSocket) {}

  onMedia(data: Buffer): void {
    if (!this.opened) {
      this.ws.close(CloseCode.Protocol, 'media before opened');
      return;
    }
    const header = readMediaHeader(data);
    if (typeof header === 'string') {
      this.ws.close(CloseCode.Protocol, `bad media header: ${header}`);
      return;
    }
    if (header.seq <= this.receivedSeq) {
      return;
    }
    if (header.seq !== this.receivedSeq + 1) {
      this.ws.close(CloseCode.Protocol, `seq gap at ${header.seq}`);
      return;
    }
    this.receivedSeq = header.seq;
    this.framesSinceAck++;
    if (this.framesSinceAck >= ACK_MAX_FRAMES) {
      this.flushAck();
    } else if (this.ackTimer === undefined) {
      const due = this.lastAckAt + ACK_INTERVAL_MS - Date.now();
      this.ackTimer = setTimeout(this.flushAck, due > 0 ? due : 0);
    }
  }

  onText(data: Buffer): void {
    let message: { type?: unknown; t?: unknown };
    try {
      message = JSON.parse(data.toString('utf8')) as typeof message;
    } catch {
      this.ws.close(CloseCode.Protocol, 'invalid JSON');
      return;
    }
    switch (message.type) {
      case 'open':
        this.opened = true;
        this.send({
          type: 'opened',
          sessionId: randomUUID(),
          resumeToken: randomBytes(24).toString('base64url'),
          lastSeq: 0,
          ack: { intervalMs: ACK_INTERVAL_MS, maxFrames: ACK_MAX_FRAMES },
          limits: { maxFrameBytes: MAX_FRAME_BYTES, maxFps: MAX_FPS },
        });
        return;
      case 'ping':
        this.send({ type: 'pong', t: message.t });
        return;
      case 'close':
        this.end();
        if (this.receivedSeq > this.ackedSeq) {
          this.ack();
        }
        this.send({
          type: 'closed',
          sessionId: randomUUID(),
          frames: this.receivedSeq,
          recording: { id: null, status: 'pending', durationMs: null },
        });
        this.ws.close(CloseCode.Normal, 'session closed');
        return;
      default:
        this.ws.close(CloseCode.Protocol, 'unknown message type');
    }
  }

  end(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.opened = false;
  }

  private readonly flushAck = (): void => {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.framesSinceAck = 0;
    this.lastAckAt = Date.now();
    this.ack();
  };

  private ack(): void {
    if (this.receivedSeq > this.ackedSeq) {
      this.ackedSeq = this.receivedSeq;
      this.sendRaw(`{"type":"ack","seq":${this.ackedSeq}}`);
    }
  }

  private send(message: object): void {
    this.sendRaw(JSON.stringify(message));
  }

  private sendRaw(text: string): void {
    if (this.ws.readyState === this.ws.OPEN) {
      this.ws.send(text);
    }
  }
}

function main(): void {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    maxPayload: MAX_FRAME_BYTES,
    perMessageDeflate: false,
    handleProtocols: (protocols: Set<string>) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  wss.on('connection', (ws: WebSocket) => {
    const session = new RawSession(ws);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        session.onMedia(data);
      } else if (data.length > MAX_CONTROL_BYTES) {
        ws.close(CloseCode.TooLarge, 'control messages are at most 64 KiB');
      } else {
        session.onText(data);
      }
    });
    ws.on('error', () => undefined);
    ws.once('close', () => session.end());
  });
  wss.once('listening', () => {
    process.stdout.write(`READY ${(wss.address() as AddressInfo).port}\n`);
  });
  const stop = (): void => {
    for (const ws of wss.clients) {
      ws.terminate();
    }
    wss.close(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main();
