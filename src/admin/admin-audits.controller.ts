import { Controller, Get, Query } from '@nestjs/common';
import { z } from 'zod';
import { AUDIT_OUTCOMES } from '../audit/audit.types';
import { RequireScopes } from '../auth/auth.decorators';
import { parseOrThrow } from '../common/zod-body.pipe';
import { AdminAuditsService, type AuditView } from './admin-audits.service';
import { decodeCursor, filterText, instant, type Page, pageQuery, uuid } from './admin-query';
import { ApiDoc } from '../docs/api-doc';
import { auditViewSchema, pageOf } from './admin-api.schema';

const auditsQuery = z.strictObject({
  outcome: z.enum(AUDIT_OUTCOMES).optional(),
  closeReason: filterText.optional(),
  channel: filterText.optional(),
  subject: filterText.optional(),
  remoteAddress: filterText.optional(),
  sessionId: uuid.optional(),
  transport: z.enum(['ws', 'http']).optional(),
  from: instant.optional(),
  to: instant.optional(),
  ...pageQuery,
});

@Controller('v1/admin/audits')
@RequireScopes('admin')
export class AdminAuditsController {
  constructor(private readonly audits: AdminAuditsService) {}

  /** Connection audits newest first, filtered by outcome, close reason, who, where and when. */
  @Get()
  @ApiDoc({
    summary: 'Connection audits, newest first, by outcome, close reason, who, where and when',
    query: auditsQuery,
    responses: { 200: pageOf(auditViewSchema) },
    errors: [400],
  })
  search(@Query() query: Record<string, unknown>): Promise<Page<AuditView>> {
    const q = parseOrThrow(auditsQuery, query, 'query');
    return this.audits.search({
      ...q,
      cursor: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
    });
  }
}
