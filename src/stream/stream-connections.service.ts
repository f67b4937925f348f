import {
  Inject,
  Injectable,
  Logger,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import type { WebSocket } from 'ws';
import { AuditWriter } from '../audit/audit-writer.service';
import { TokenVerifier } from '../auth/token-verifier.service';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { CloseCode } from '../protocol/close-codes';
import { SessionStore } from '../sessions/session-store.service';
import type { AcceptedHandshake } from './handshake.service';
import { QuotaService } from './quota.service';
import { SessionRegistry } from './session-registry.service';
import { type ConnectionDeps, StreamConnection } from './stream-connection';

const CONNECTION = Symbol('framegate.connection');

/** The connection a socket carries, set when the gateway accepts it. */
export function connectionOf(ws: WebSocket): StreamConnection | undefined {
  return (ws as WebSocket & { [CONNECTION]?: StreamConnection })[CONNECTION];
}

/**
 * Every live WebSocket connection of this node: creates them, runs the one heartbeat timer for
 * all of them (ping every HEARTBEAT_INTERVAL_MS, 4008 after HEARTBEAT_TIMEOUT_MS of silence), and
 * closes them all on drain.
 */
@Injectable()
export class StreamConnections implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(StreamConnections.name);
  private readonly live = new Set<StreamConnection>();
  private readonly deps: ConnectionDeps;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastPingAt = 0;
  private readonly allClosed: Array<() => void> = [];

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    registry: SessionRegistry,
    store: SessionStore,
    audit: AuditWriter,
    verifier: TokenVerifier,
    quotas: QuotaService,
  ) {
    this.deps = {
      config,
      registry,
      store,
      audit,
      verifier,
      quotas,
      logger: this.logger,
      onClosed: (connection) => {
        this.live.delete(connection);
        if (this.live.size === 0) {
          this.allClosed.splice(0).forEach((resolve) => resolve());
        }
      },
    };
  }

  onModuleInit(): void {
    // Checked ten times per timeout, so eviction comes at most 10 % after it; pings go out at
    // their own interval.
    const tick = Math.min(this.config.HEARTBEAT_INTERVAL_MS, this.config.HEARTBEAT_TIMEOUT_MS / 10);
    this.heartbeat = setInterval(() => this.beat(), tick);
    this.heartbeat.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.heartbeat);
  }

  get size(): number {
    return this.live.size;
  }

  /** The live connections of this node (a copy: safe to iterate while they close). */
  list(): StreamConnection[] {
    return [...this.live];
  }

  get(connectionId: string): StreamConnection | undefined {
    for (const connection of this.live) {
      if (connection.connectionId === connectionId) {
        return connection;
      }
    }
    return undefined;
  }

  accept(ws: WebSocket, handshake: AcceptedHandshake): StreamConnection {
    const connection = new StreamConnection(ws, handshake, this.deps);
    (ws as WebSocket & { [CONNECTION]?: StreamConnection })[CONNECTION] = connection;
    this.live.add(connection);
    // One line per connection, never per frame; the audit row has the rest.
    this.logger.log(
      {
        connectionId: handshake.connectionId,
        subject: handshake.principal.subject,
        channel: handshake.principal.channel,
      },
      'connection opened',
    );
    return connection;
  }

  /** Final acks and 1012 for every connection; resolves when all have closed (or on timeout). */
  async drain(timeoutMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (this.live.size === 0) {
        resolve();
      } else {
        this.allClosed.push(resolve);
      }
    });
    await Promise.all([...this.live].map((c) => c.shutdown()));
    await Promise.race([closed, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  private beat(): void {
    const now = Date.now();
    const deadline = now - this.config.HEARTBEAT_TIMEOUT_MS;
    const ping = now - this.lastPingAt >= this.config.HEARTBEAT_INTERVAL_MS;
    if (ping) {
      this.lastPingAt = now;
    }
    for (const connection of this.live) {
      if (connection.lastSeen < deadline) {
        connection.end(CloseCode.HeartbeatTimeout, 'heartbeat_timeout', 'no sign of life');
      } else if (ping && connection.ws.readyState === connection.ws.OPEN) {
        connection.ws.ping();
      }
    }
  }
}
