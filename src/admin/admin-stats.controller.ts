import { Controller, Get, Query } from '@nestjs/common';
import { RequireScopes } from '../auth/auth.decorators';
import { parseOrThrow } from '../common/zod-body.pipe';
import { noQuery } from './admin-query';
import { AdminStatsService, type NodeStats } from './admin-stats.service';

@Controller('v1/admin/stats')
export class AdminStatsController {
  constructor(private readonly stats: AdminStatsService) {}

  @Get()
  @RequireScopes('admin')
  get(@Query() query: Record<string, unknown>): Promise<NodeStats> {
    parseOrThrow(noQuery, query, 'query');
    return this.stats.stats();
  }
}
