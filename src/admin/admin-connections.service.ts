import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { AuditWriter } from '../audit/audit-writer.service';
import type { Principal } from '../auth/scopes';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { SessionRegistry } from '../stream/session-registry.service';
import { type ConnectionInfo, StreamConnection } from '../stream/stream-connection';
import { StreamConnections } from '../stream/stream-connections.service';

/** This node's live connections, and kicks by an administrator (audited with the admin). */
@Injectable()
export class AdminConnectionsService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly connections: StreamConnections,
    private readonly registry: SessionRegistry,
    private readonly audit: AuditWriter,
  ) {}

  /** Oldest first; the live set of one node, so one page (QUOTA_NODE_MAX_CONNECTIONS at most). */
  list(): { node: string; items: ConnectionInfo[] } {
    const items = this.connections
      .list()
      .map((c) => c.info())
      .sort((a, b) => (a.since < b.since ? -1 : a.since > b.since ? 1 : a.id < b.id ? -1 : 1));
    return { node: this.config.NODE_ID, items };
  }

  /**
   * Closes a live connection with 4003 (`kicked`, its audit row naming the admin); a session it
   * carries is interrupted and can be resumed within its window, as after any lost connection.
   */
  async kick(
    admin: Principal,
    connectionId: string,
  ): Promise<{ connectionId: string; sessionId: string | null; kicked: true }> {
    const connection = this.connections.get(connectionId);
    if (!connection || connection.isClosing) {
      throw new AppError(ErrorCode.NotFound, 'no live connection with this id on this node');
    }
    const { sessionId } = connection.info();
    this.recordKick(admin, connectionId, sessionId);
    await connection.kickBy(admin.subject);
    return { connectionId, sessionId, kicked: true };
  }

  /**
   * Disconnects the live WebSocket of a session with 4003 (the client should stop); the session
   * is interrupted and ends as abandoned unless resumed within its window. `disconnected: true`
   * is answered once the session is detached, not merely once the close frame is queued.
   */
  async disconnectSession(
    admin: Principal,
    sessionId: string,
  ): Promise<{ sessionId: string; disconnected: boolean }> {
    const runtime = this.registry.get(sessionId);
    if (!runtime) {
      throw new AppError(ErrorCode.NotFound, 'no live session with this id on this node');
    }
    const sink = runtime.attached;
    if (!(sink instanceof StreamConnection)) {
      return { sessionId, disconnected: false };
    }
    this.recordKick(admin, sink.connectionId, sessionId);
    await sink.kickBy(admin.subject, runtime);
    return { sessionId, disconnected: true };
  }

  private recordKick(admin: Principal, connectionId: string, sessionId: string | null): void {
    this.audit.record({
      kind: 'admin_action',
      id: randomUUID(),
      at: new Date(),
      node: this.config.NODE_ID,
      subject: admin.subject,
      action: 'kick',
      target: connectionId,
      detail: { sessionId },
    });
  }
}
