import { Injectable, type OnModuleInit } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { ClusterBus } from '../cluster/cluster-bus.service';
import { ConnectionLeases } from '../cluster/connection-leases.service';
import { SessionStore } from '../sessions/session-store.service';
import { SessionRegistry } from './session-registry.service';

/** Bus request kind: send a stored `msg` to the client of a session held on the addressee. */
const PUSH = 'session.push';

/** Why a pushed message did not reach the client now (it stays stored either way). */
export type PushMiss = 'not_connected' | 'timeout' | 'not_listening' | 'failed';

export interface PushResult {
  delivered: boolean;
  /** Set when not delivered. */
  reason?: PushMiss;
}

/**
 * A server `msg` pushed by the business or admin API, to the session's client on whichever node
 * holds its WebSocket. The message is stored first (so it is in the session's record whether or
 * not it is delivered, and a bus payload carries its id only); the holder reads it back and sends
 * it, and says whether it did within CLUSTER_REQUEST_TIMEOUT_MS.
 */
@Injectable()
export class MessagePush implements OnModuleInit {
  constructor(
    @InjectDataSource() private readonly db: DataSource,
    private readonly registry: SessionRegistry,
    private readonly store: SessionStore,
    private readonly leases: ConnectionLeases,
    private readonly bus: ClusterBus,
  ) {}

  onModuleInit(): void {
    this.bus.on(PUSH, (body) => this.sendStored(String(body.sessionId), String(body.messageId)));
  }

  async push(sessionId: string, id: string, body: unknown, sender: string): Promise<PushResult> {
    const runtime = this.registry.get(sessionId);
    if (runtime) {
      // Held here: stored through the runtime, which times it into the recording.
      await runtime.storeMessage('out', id, body, sender);
      const sink = this.registry.get(sessionId)?.attached;
      if (sink?.transport !== 'ws') {
        return { delivered: false, reason: 'not_connected' };
      }
      sink.send({ type: 'msg', id, body });
      return { delivered: true };
    }
    await this.store.storeMessageByStatus(sessionId, 'out', id, body, sender, new Date());
    const lease = await this.leases.findBySession(sessionId);
    if (!lease) {
      return { delivered: false, reason: 'not_connected' };
    }
    const answer = await this.bus.request(lease.node, PUSH, { sessionId, messageId: id });
    if (!answer.delivered) {
      return { delivered: false, reason: answer.reason };
    }
    return answer.reply === true
      ? { delivered: true }
      : { delivered: false, reason: 'not_connected' };
  }

  /** The holder's side: sends the stored message if a WebSocket of this node carries the session. */
  private async sendStored(sessionId: string, messageId: string): Promise<boolean> {
    if (this.registry.get(sessionId)?.attached?.transport !== 'ws') {
      return false;
    }
    const rows = await this.db.query<Array<{ body: unknown }>>(
      `SELECT body FROM session_messages
        WHERE session_id = $1 AND direction = 'out' AND client_id = $2`,
      [sessionId, messageId],
    );
    // The socket may have gone during the read.
    const sink = this.registry.get(sessionId)?.attached;
    if (rows.length === 0 || sink?.transport !== 'ws') {
      return false;
    }
    sink.send({ type: 'msg', id: messageId, body: rows[0].body });
    return true;
  }
}
