/**
 * The baselines of bench:ingest: a plain `ws` server speaking the same framing as framegate. It
 * parses the 12-byte media header, applies the sequence rule and the same merged-ack rule, and
 * answers `open` with an `opened`-shaped message; no auth, no database, no recording.
 *
 * Without RAW_SPOOL_DIR nothing is durable (the `raw` baseline). With it, each session appends its
 * messages to a file of its own with the same 8-byte record prefix as framegate's spool (length,
 * CRC-32), and every merged ack waits for one writev + fdatasync covering it (the `naive durable`
 * baseline: the least a server can do for framegate's durability, written the obvious way).
 *
 * Usage: node -r ts-node/register/transpile-only bench/support/raw-server.ts
 * Env: ACK_INTERVAL_MS (200), ACK_MAX_FRAMES (50), MAX_FRAME_BYTES (2 MiB), RAW_SPOOL_DIR.
 * Prints `READY <port>` once listening on 127.0.0.1:<ephemeral>; stops on SIGTERM/SIGINT.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { type WebSocket, WebSocketServer } from 'ws';
import { CloseCode } from '../../src/protocol/close-codes';
import { readMediaHeader } from '../../src/protocol/media-header';
import { MAX_CONTROL_BYTES } from '../../src/protocol/messages';

const SUBPROTOCOL = 'framegate.v1';
const ACK_INTERVAL_MS = Number(process.env.ACK_INTERVAL_MS ?? 200);
const ACK_MAX_FRAMES = Number(process.env.ACK_MAX_FRAMES ?? 50);
const MAX_FRAME_BYTES = Number(process.env.MAX_FRAME_BYTES ?? 2 * 1024 * 1024);
const MAX_FPS = 30;
const SPOOL_DIR = process.env.RAW_SPOOL_DIR;

/** Appends length + CRC-32 prefixed records; each `sync` is one writev and one fdatasync. */
class NaiveSpool {
  private pending: Buffer[] = [];
  private position = 0;
  private rounds: Promise<void> = Promise.resolve();

  private constructor(private readonly file: FileHandle) {}

  static async create(path: string): Promise<NaiveSpool> {
    return new NaiveSpool(await open(path, 'w'));
  }

  append(message: Buffer): void {
    const prefix = Buffer.allocUnsafe(8);
    prefix.writeUInt32BE(message.length, 0);
    prefix.writeUInt32BE(crc32(message), 4);
    this.pending.push(prefix, message);
  }

  /** Resolves when everything appended before the call is on disk. */
  sync(): Promise<void> {
    this.rounds = this.rounds.then(async () => {
      const batch = this.pending;
      this.pending = [];
      if (batch.length > 0) {
        const { bytesWritten } = await this.file.writev(batch, this.position);
        this.position += bytesWritten;
        await this.file.datasync();
      }
    });
    return this.rounds;
  }

  async close(): Promise<void> {
    await this.rounds.catch(() => undefined);
    await this.file.close();
  }
}

/** One connection's session: the same counters framegate's runtime keeps for its acks. */
class RawSession {
  opened = false;
  private receivedSeq = 0;
  private ackedSeq = 0;
  private framesSinceAck = 0;
  private lastAckAt = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private spool: NaiveSpool | null = null;

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
    this.spool?.append(data);
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
        if (SPOOL_DIR) {
          void NaiveSpool.create(join(SPOOL_DIR, randomUUID())).then(
            (spool) => {
              this.spool = spool;
              this.opened = true;
              this.sendOpened();
            },
            () => this.ws.close(CloseCode.Internal, 'spool not created'),
          );
        } else {
          this.opened = true;
          this.sendOpened();
        }
        return;
      case 'ping':
        this.send({ type: 'pong', t: message.t });
        return;
      case 'close': {
        const seq = this.receivedSeq;
        const synced = this.spool?.sync() ?? Promise.resolve();
        this.end();
        synced.then(
          () => {
            this.ack(seq);
            this.send({
              type: 'closed',
              sessionId: randomUUID(),
              frames: seq,
              recording: { id: null, status: 'pending', durationMs: null },
            });
            this.ws.close(CloseCode.Normal, 'session closed');
          },
          () => this.ws.close(CloseCode.Internal, 'spool write failed'),
        );
        return;
      }
      default:
        this.ws.close(CloseCode.Protocol, 'unknown message type');
    }
  }

  end(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.opened = false;
    void this.spool?.close();
    this.spool = null;
  }

  private sendOpened(): void {
    this.send({
      type: 'opened',
      sessionId: randomUUID(),
      resumeToken: randomBytes(24).toString('base64url'),
      lastSeq: 0,
      ack: { intervalMs: ACK_INTERVAL_MS, maxFrames: ACK_MAX_FRAMES },
      limits: { maxFrameBytes: MAX_FRAME_BYTES, maxFps: MAX_FPS },
    });
  }

  private readonly flushAck = (): void => {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.framesSinceAck = 0;
    this.lastAckAt = Date.now();
    if (this.spool) {
      const seq = this.receivedSeq;
      this.spool.sync().then(
        () => this.ack(seq),
        () => this.ws.close(CloseCode.Internal, 'spool write failed'),
      );
    } else {
      this.ack(this.receivedSeq);
    }
  };

  private ack(seq: number): void {
    if (seq > this.ackedSeq) {
      this.ackedSeq = seq;
      this.sendRaw(`{"type":"ack","seq":${seq}}`);
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
