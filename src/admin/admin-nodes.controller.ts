import { Controller, Get, Inject, Query } from '@nestjs/common';
import { RequireScopes } from '../auth/auth.decorators';
import { Membership } from '../cluster/membership.service';
import { parseOrThrow } from '../common/zod-body.pipe';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { ApiDoc } from '../docs/api-doc';
import { type NodeList, nodeListSchema } from './admin-api.schema';
import { noQuery } from './admin-query';

@Controller('v1/admin/nodes')
@RequireScopes('admin')
export class AdminNodesController {
  constructor(
    private readonly membership: Membership,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Every node that has registered, alive or not, by id. */
  @Get()
  @ApiDoc({
    summary: 'The nodes of the cluster with their heartbeats, alive or not',
    responses: { 200: nodeListSchema },
    errors: [400],
  })
  async list(@Query() query: Record<string, unknown>): Promise<NodeList> {
    parseOrThrow(noQuery, query, 'query');
    const nodes = await this.membership.nodes();
    return {
      node: this.config.NODE_ID,
      items: nodes.map((n) => ({
        ...n,
        startedAt: n.startedAt.toISOString(),
        heartbeatAt: n.heartbeatAt.toISOString(),
        stoppedAt: n.stoppedAt?.toISOString() ?? null,
      })),
    };
  }
}
