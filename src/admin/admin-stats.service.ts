import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { AuditWriter } from '../audit/audit-writer.service';
import { ConnectionLeases } from '../cluster/connection-leases.service';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { RecordingService } from '../media/recording.service';
import { CapacityService } from '../stream/capacity.service';
import { QuotaService } from '../stream/quota.service';
import { SessionRegistry } from '../stream/session-registry.service';
import { StreamConnections } from '../stream/stream-connections.service';
import type { NodeStats } from './admin-api.schema';
export type { NodeStats } from './admin-api.schema';

@Injectable()
export class AdminStatsService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectDataSource() private readonly db: DataSource,
    private readonly registry: SessionRegistry,
    private readonly connections: StreamConnections,
    private readonly quotas: QuotaService,
    private readonly leases: ConnectionLeases,
    private readonly recordings: RecordingService,
    private readonly capacity: CapacityService,
    private readonly audit: AuditWriter,
  ) {}

  async stats(): Promise<NodeStats> {
    const [sessionRows, recordingRows, clusterByChannel] = await Promise.all([
      this.db.query<Array<{ status: string; n: number }>>(
        `SELECT status, count(*)::int AS n FROM sessions GROUP BY status`,
      ),
      this.db.query<Array<{ status: string; n: number; bytes: string }>>(
        `SELECT status, count(*)::int AS n, coalesce(sum(bytes), 0)::text AS bytes
           FROM recordings GROUP BY status`,
      ),
      this.leases.channelCounts(),
    ]);
    let attached = 0;
    let interrupted = 0;
    for (const runtime of this.registry.runtimes()) {
      if (runtime.attached) {
        attached++;
      } else if (runtime.status === 'interrupted') {
        interrupted++;
      }
    }
    const slots = this.quotas.stats();
    const { encoders, recorders } = this.recordings.status();
    let backlogFrames = 0;
    let spoolSessions = 0;
    let spoolFrames = 0;
    for (const r of recorders) {
      backlogFrames += r.backlogFrames;
      if (r.fromSpool) {
        spoolSessions++;
        spoolFrames += r.backlogFrames;
      }
    }
    return {
      node: this.config.NODE_ID,
      connections: this.connections.size,
      connectionsByChannel: slots.channels,
      cluster: {
        connections: Object.values(clusterByChannel).reduce((a, b) => a + b, 0),
        connectionsByChannel: clusterByChannel,
      },
      slots: { ...slots, max: this.config.QUOTA_NODE_MAX_CONNECTIONS },
      sessions: { live: this.registry.size, attached, interrupted },
      sessionsByStatus: Object.fromEntries(sessionRows.map((r) => [r.status, r.n])),
      recordingsByStatus: Object.fromEntries(
        recordingRows.map((r) => [r.status, { count: r.n, bytes: Number(r.bytes) }]),
      ),
      encoders: { ...encoders, backlogFrames },
      backlogs: {
        spool: { sessions: spoolSessions, frames: spoolFrames },
        encoder: { waitingSessions: encoders.waiting, frames: backlogFrames },
        audit: { records: this.audit.backlog() },
      },
      capacity: this.capacity.stats(),
    };
  }
}
