import { Controller, Get, Inject } from '@nestjs/common';
import { z } from 'zod';
import { RequireScopes } from '../auth/auth.decorators';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { RecordingService } from '../media/recording.service';
import { ApiDoc } from '../docs/api-doc';
import { CapacityService, capacityStatsSchema } from './capacity.service';
import { QuotaService } from './quota.service';
import { SessionRegistry } from './session-registry.service';
import { StreamConnections } from './stream-connections.service';

/** `GET /v1/admin/stats`: what this node carries now and what it can take. */
export const nodeStatsSchema = z.strictObject({
  node: z.string(),
  connections: z.number().int(),
  /** Connection slots held against QUOTA_NODE_MAX_CONNECTIONS, and per channel. */
  slots: z.strictObject({
    node: z.number().int(),
    max: z.number().int(),
    channels: z.record(z.string(), z.number().int()),
  }),
  sessions: z.strictObject({
    live: z.number().int(),
    attached: z.number().int(),
    interrupted: z.number().int(),
  }),
  encoders: z.strictObject({
    active: z.number().int(),
    waiting: z.number().int(),
    max: z.number().int(),
    backlogFrames: z.number().int(),
  }),
  capacity: capacityStatsSchema,
});

export type NodeStats = z.output<typeof nodeStatsSchema>;

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
  @ApiDoc({
    summary: "This node's connections, slots, sessions, encoders and recording capacity",
    responses: { 200: nodeStatsSchema },
  })
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
