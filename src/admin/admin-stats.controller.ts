import { Controller, Get, Query } from '@nestjs/common';
import { RequireScopes } from '../auth/auth.decorators';
import { parseOrThrow } from '../common/zod-body.pipe';
import { noQuery } from './admin-query';
import { AdminStatsService, type NodeStats } from './admin-stats.service';
import { ApiDoc } from '../docs/api-doc';
import { nodeStatsSchema } from './admin-api.schema';

@Controller('v1/admin/stats')
export class AdminStatsController {
  constructor(private readonly stats: AdminStatsService) {}

  @Get()
  @RequireScopes('admin')
  @ApiDoc({
    summary: "This node's load and capacity, and the cluster's sessions and recordings by status",
    responses: { 200: nodeStatsSchema },
    errors: [400],
  })
  get(@Query() query: Record<string, unknown>): Promise<NodeStats> {
    parseOrThrow(noQuery, query, 'query');
    return this.stats.stats();
  }
}
