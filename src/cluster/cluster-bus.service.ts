import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Client, type Notification } from 'pg';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { RUNTIME, type Runtime } from '../config/runtime';

/** The one LISTEN channel of the cluster; messages name their addressee. */
export const BUS_CHANNEL = 'framegate_cluster';

/**
 * NOTIFY payloads are limited to 8000 bytes; a message carries ids and small fields only (a
 * pushed `msg` body is stored first and read by the node that delivers it).
 */
const MAX_PAYLOAD_BYTES = 7_900;

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5_000;

/** A handler's answer goes back to the sender; a thrown error is reported as `failed`. */
export type BusHandler = (body: Record<string, unknown>, from: string) => unknown;

/** The outcome of a routed request. */
export type BusAnswer =
  | { delivered: true; reply: unknown }
  | { delivered: false; reason: 'timeout' | 'not_listening' | 'failed'; message?: string };

interface Envelope {
  /** The addressee's NODE_ID. */
  to: string;
  from: string;
  id: string;
  kind: string;
  body?: Record<string, unknown>;
  /** On a reply: the request's outcome. */
  ok?: boolean;
  reply?: unknown;
  error?: string;
}

const REPLY = '__reply';

/**
 * Requests between nodes over Postgres LISTEN/NOTIFY: a kick, a pushed message or a session
 * takeover goes to the node that holds the connection, and its answer comes back the same way.
 * Every request is answered within CLUSTER_REQUEST_TIMEOUT_MS or reported undelivered; nothing is
 * queued or retried here (the caller decides; a dead addressee's state is in Postgres anyway).
 *
 * One dedicated connection LISTENs (outside the pool: a LISTEN holds its session) and sends too;
 * while it is down, sends go through the pool. While the listener is down (a database outage) this node answers nothing, so
 * its callers time out, and it says `not_listening` to its own callers rather than wait.
 */
@Injectable()
export class ClusterBus implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(ClusterBus.name);
  private readonly handlers = new Map<string, BusHandler>();
  private readonly pending = new Map<
    string,
    { resolve: (answer: BusAnswer) => void; timer: NodeJS.Timeout }
  >();
  private listener: Client | null = null;
  private listening = false;
  private stopped = false;
  private reconnectDelay = RECONNECT_MIN_MS;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(RUNTIME) private readonly runtime: Runtime,
    @InjectDataSource() private readonly db: DataSource,
  ) {}

  get nodeId(): string {
    return this.config.NODE_ID;
  }

  /** True while this node receives requests. */
  get isListening(): boolean {
    return this.listening;
  }

  /** Registers the handler of one kind of request (one per kind). */
  on(kind: string, handler: BusHandler): void {
    if (this.handlers.has(kind) || kind === REPLY) {
      throw new Error(`bus handler for "${kind}" already registered`);
    }
    this.handlers.set(kind, handler);
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.connect().catch((err: unknown) => {
      this.logger.warn({ err }, 'cluster bus not listening yet; retrying');
      this.scheduleReconnect();
    });
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    for (const [id, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.resolve({ delivered: false, reason: 'not_listening', message: 'node stopping' });
      this.pending.delete(id);
    }
    const listener = this.listener;
    this.listener = null;
    this.listening = false;
    await listener?.end().catch(() => undefined);
  }

  /**
   * Sends a request of `kind` to node `to` and resolves with its reply, or with why there is
   * none, within `timeoutMs` (CLUSTER_REQUEST_TIMEOUT_MS). Never rejects. A request to this node
   * runs its handler directly.
   */
  async request(
    to: string,
    kind: string,
    body: Record<string, unknown>,
    timeoutMs = this.config.CLUSTER_REQUEST_TIMEOUT_MS,
  ): Promise<BusAnswer> {
    if (to === this.nodeId) {
      return this.runLocal(kind, body, this.nodeId);
    }
    if (!this.listening) {
      // The reply could not reach us: answer now instead of after the timeout.
      return { delivered: false, reason: 'not_listening', message: 'this node is not listening' };
    }
    const id = randomUUID();
    const answer = new Promise<BusAnswer>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ delivered: false, reason: 'timeout' });
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, timer });
    });
    try {
      await this.send({ to, from: this.nodeId, id, kind, body });
    } catch (err) {
      const waiter = this.pending.get(id);
      if (waiter) {
        clearTimeout(waiter.timer);
        this.pending.delete(id);
        waiter.resolve({
          delivered: false,
          reason: 'failed',
          message: err instanceof Error ? err.message : String(err),
        });
      }
    }
    return answer;
  }

  private async runLocal(
    kind: string,
    body: Record<string, unknown>,
    from: string,
  ): Promise<BusAnswer> {
    const handler = this.handlers.get(kind);
    if (!handler) {
      return { delivered: false, reason: 'failed', message: `no handler for "${kind}"` };
    }
    try {
      return { delivered: true, reply: await handler(body, from) };
    } catch (err) {
      return {
        delivered: false,
        reason: 'failed',
        message: err instanceof Error ? err.message : String(err),
      };
    }
  }

  private async send(envelope: Envelope): Promise<void> {
    const payload = JSON.stringify(envelope);
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) {
      throw new Error(`cluster message "${envelope.kind}" too large for NOTIFY`);
    }
    // On the listening connection when there is one: a request or a reply waiting for a pooled
    // connection behind a burst of resumes outlived CLUSTER_REQUEST_TIMEOUT_MS (bench:soak), and
    // a NOTIFY is one short statement the listener's idle connection runs at once.
    const listener = this.listener;
    if (listener) {
      await listener.query(`SELECT pg_notify($1, $2)`, [BUS_CHANNEL, payload]);
    } else {
      await this.db.query(`SELECT pg_notify($1, $2)`, [BUS_CHANNEL, payload]);
    }
  }

  private async connect(): Promise<void> {
    const client = new Client({
      connectionString: this.runtime.databaseUrl,
      application_name: `framegate:${this.nodeId}:bus`,
      // A dead database is noticed by the keepalive, not by the next request timing out.
      keepAlive: true,
    });
    client.on('notification', (msg) => this.onNotification(msg));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, null));
    await client.connect();
    if (this.stopped) {
      await client.end();
      return;
    }
    await client.query(`LISTEN ${BUS_CHANNEL}`);
    this.listener = client;
    this.listening = true;
    if (this.reconnectDelay > RECONNECT_MIN_MS) {
      this.logger.log('cluster bus listening again');
    }
    this.reconnectDelay = RECONNECT_MIN_MS;
  }

  private lost(client: Client, err: Error | null): void {
    if (this.listener !== client && this.listener !== null) {
      return;
    }
    const wasListening = this.listening;
    this.listener = null;
    this.listening = false;
    client.removeAllListeners('notification');
    void client.end().catch(() => undefined);
    if (this.stopped) {
      return;
    }
    if (wasListening) {
      this.logger.warn({ err: err?.message }, 'cluster bus connection lost; reconnecting');
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) {
      return;
    }
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, RECONNECT_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect().catch(() => this.scheduleReconnect());
    }, delay);
    this.reconnectTimer.unref();
  }

  private onNotification(msg: Notification): void {
    if (msg.channel !== BUS_CHANNEL || !msg.payload) {
      return;
    }
    let envelope: Envelope;
    try {
      envelope = JSON.parse(msg.payload) as Envelope;
    } catch {
      return;
    }
    if (envelope.to !== this.nodeId) {
      return;
    }
    if (envelope.kind === REPLY) {
      const waiter = this.pending.get(envelope.id);
      if (waiter) {
        clearTimeout(waiter.timer);
        this.pending.delete(envelope.id);
        waiter.resolve(
          envelope.ok
            ? { delivered: true, reply: envelope.reply }
            : { delivered: false, reason: 'failed', message: envelope.error },
        );
      }
      return;
    }
    void this.answer(envelope);
  }

  private async answer(request: Envelope): Promise<void> {
    const outcome = await this.runLocal(request.kind, request.body ?? {}, request.from);
    const reply: Envelope = outcome.delivered
      ? {
          to: request.from,
          from: this.nodeId,
          id: request.id,
          kind: REPLY,
          ok: true,
          reply: outcome.reply,
        }
      : {
          to: request.from,
          from: this.nodeId,
          id: request.id,
          kind: REPLY,
          ok: false,
          error: outcome.message ?? outcome.reason,
        };
    await this.send(reply).catch((err: unknown) =>
      // The sender times out and reports the request undelivered.
      this.logger.warn({ err, kind: request.kind, to: request.from }, 'cluster reply not sent'),
    );
  }
}
