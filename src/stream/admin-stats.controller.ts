import { Controller, Get, Inject } from '@nestjs/common';
import { RequireScopes } from '../auth/auth.decorators';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { RecordingService } from '../media/recording.service';
import { CapacityService, type CapacityStats } from './capacity.service';
import { QuotaService } from './quota.service';
import { SessionRegistry } from './session-registry.service';
import { StreamConnections } from './stream-connections.service';

/** `GET /v1/admin/stats`: what this node carries now and what it can take. */
export interface NodeStats {
  node: string;
  connections: number;
  /** Connection slots held against QUOTA_NODE_MAX_CONNECTIONS, and per channel. */
  slots: { node: number; max: number; channels: Record<string, number> };
  sessions: { live: number; attached: number; interrupted: number };
  encoders: { active: number; waiting: number; max: number; backlogFrames: number };
  capacity: CapacityStats;
}

@Controller('v1/admin/stats')
export class AdminStatsController {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SessionRegistry,
    private readonly connections: StreamConnections,
    private readonly quotas: QuotaService,
    private readonly recordings: RecordingService,
    private readonly capacity: CapacityService,
  ) {}

  @Get()
  @RequireScopes('admin')
  stats(): NodeStats {
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
    return {
      node: this.config.NODE_ID,
      connections: this.connections.size,
      slots: { ...slots, max: this.config.QUOTA_NODE_MAX_CONNECTIONS },
      sessions: { live: this.registry.size, attached, interrupted },
      encoders: {
        ...encoders,
        backlogFrames: recorders.reduce((sum, r) => sum + r.backlogFrames, 0),
      },
      capacity: this.capacity.stats(),
    };
  }
}
