import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { AuditWriter } from '../audit/audit-writer.service';
import type { Principal } from '../auth/scopes';
import { ClusterBus, type BusAnswer } from '../cluster/cluster-bus.service';
import { ConnectionLeases, type LeaseView } from '../cluster/connection-leases.service';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { SessionRegistry } from '../stream/session-registry.service';
import { type ConnectionInfo, StreamConnection } from '../stream/stream-connection';
import { StreamConnections } from '../stream/stream-connections.service';

/** Bus request kinds: close a connection, or a session's connection, on the node holding it. */
const KICK = 'connection.kick';
const DISCONNECT = 'session.disconnect';

export interface Kicked {
  connectionId: string;
  sessionId: string | null;
  node: string;
  kicked: true;
}

export interface Disconnected {
  sessionId: string;
  disconnected: boolean;
  node?: string;
}

/**
 * The cluster's live connections (from their leases), and kicks by an administrator (audited
 * with the admin), sent to whichever node holds the connection over the cluster bus.
 */
@Injectable()
export class AdminConnectionsService implements OnModuleInit {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectDataSource() private readonly db: DataSource,
    private readonly connections: StreamConnections,
    private readonly registry: SessionRegistry,
    private readonly leases: ConnectionLeases,
    private readonly bus: ClusterBus,
    private readonly audit: AuditWriter,
  ) {}

  onModuleInit(): void {
    this.bus.on(KICK, (body) => this.kickHere(String(body.connectionId), String(body.admin)));
    this.bus.on(DISCONNECT, (body) =>
      this.disconnectHere(String(body.sessionId), String(body.admin)),
    );
  }

  /**
   * Live connections oldest first: every node's (from the leases), or one node's. Live counters
   * (frames, bytes, last sign of life) only for the connections of the node that answers, which
   * knows them; the others' leases carry none.
   */
  async list(node?: string): Promise<{ node: string; items: ConnectionInfo[] }> {
    const leases = await this.leases.list(node);
    const items = leases.map((lease) => {
      const local = lease.node === this.config.NODE_ID ? this.connections.get(lease.id) : undefined;
      return local ? local.info() : infoOf(lease);
    });
    return { node: this.config.NODE_ID, items };
  }

  /**
   * Closes a live connection with 4003 (`kicked`, its audit row naming the admin) on whichever
   * node holds it; a session it carries is interrupted and can be resumed within its window.
   * 404 when no lease names it (or its node is dead: the connection went with it); 504 when the
   * holder does not answer within CLUSTER_REQUEST_TIMEOUT_MS.
   */
  async kick(admin: Principal, connectionId: string): Promise<Kicked> {
    const lease = await this.leases.find(connectionId);
    if (!lease) {
      throw new AppError(ErrorCode.NotFound, 'no live connection with this id');
    }
    if (!lease.valid) {
      throw undelivered(lease.node, 'its node is dead; its lease lapses with it');
    }
    this.recordKick(admin, connectionId, lease.sessionId, lease.node);
    const answer = await this.bus.request(lease.node, KICK, {
      connectionId,
      admin: admin.subject,
    });
    const reply = replyOf<{ sessionId: string | null } | null>(answer, lease.node);
    if (reply === null) {
      throw new AppError(ErrorCode.NotFound, 'no live connection with this id');
    }
    return { connectionId, sessionId: reply.sessionId, node: lease.node, kicked: true };
  }

  /**
   * Disconnects the live WebSocket of a session with 4003 (the client should stop) on whichever
   * node holds it; the session is interrupted and ends as abandoned unless resumed within its
   * window. `disconnected: true` once the holder has detached it; false when the session is live
   * but no WebSocket carries it.
   */
  async disconnectSession(admin: Principal, sessionId: string): Promise<Disconnected> {
    if (this.registry.get(sessionId)) {
      const local = await this.disconnectHere(sessionId, admin.subject);
      if (local.disconnected) {
        this.recordKick(admin, local.connectionId, sessionId, this.config.NODE_ID);
      }
      return { sessionId, disconnected: local.disconnected, node: this.config.NODE_ID };
    }
    const lease = await this.leases.findBySession(sessionId);
    if (lease && lease.node !== this.config.NODE_ID) {
      this.recordKick(admin, lease.id, sessionId, lease.node);
      const answer = await this.bus.request(lease.node, DISCONNECT, {
        sessionId,
        admin: admin.subject,
      });
      const reply = replyOf<{ disconnected: boolean }>(answer, lease.node);
      return { sessionId, disconnected: reply.disconnected, node: lease.node };
    }
    const rows = await this.db.query<Array<{ status: string }>>(
      `SELECT status FROM sessions WHERE id = $1`,
      [sessionId],
    );
    const status = rows[0]?.status;
    if (status !== 'open' && status !== 'interrupted') {
      throw new AppError(ErrorCode.NotFound, 'no live session with this id');
    }
    return { sessionId, disconnected: false };
  }

  /** The holder's side of a kick: null when the connection is not (or no longer) here. */
  private async kickHere(
    connectionId: string,
    admin: string,
  ): Promise<{ sessionId: string | null } | null> {
    const connection = this.connections.get(connectionId);
    if (!connection || connection.isClosing) {
      return null;
    }
    const { sessionId } = connection.info();
    await connection.kickBy(admin);
    return { sessionId };
  }

  /** The holder's side of a session disconnect. */
  private async disconnectHere(
    sessionId: string,
    admin: string,
  ): Promise<{ disconnected: boolean; connectionId: string }> {
    const runtime = this.registry.get(sessionId);
    const sink = runtime?.attached;
    if (!runtime || !(sink instanceof StreamConnection)) {
      return { disconnected: false, connectionId: '' };
    }
    await sink.kickBy(admin, runtime);
    return { disconnected: true, connectionId: sink.connectionId };
  }

  private recordKick(
    admin: Principal,
    connectionId: string,
    sessionId: string | null,
    node: string,
  ): void {
    this.audit.record({
      kind: 'admin_action',
      id: randomUUID(),
      at: new Date(),
      node: this.config.NODE_ID,
      subject: admin.subject,
      action: 'kick',
      target: connectionId,
      detail: { sessionId, node },
    });
  }
}

function infoOf(lease: LeaseView): ConnectionInfo {
  return {
    id: lease.id,
    node: lease.node,
    sessionId: lease.sessionId,
    subject: lease.subject,
    channel: lease.channel,
    remoteAddress: lease.remoteAddress,
    transport: 'ws',
    since: lease.since.toISOString(),
  };
}

/** The holder's answer, or 504 naming the node when there is none. */
function replyOf<T>(answer: BusAnswer, node: string): T {
  if (!answer.delivered) {
    throw undelivered(node, answer.message ?? answer.reason);
  }
  return answer.reply as T;
}

function undelivered(node: string, why: string): AppError {
  return new AppError(ErrorCode.Undelivered, `node ${node} did not carry this out: ${why}`);
}
