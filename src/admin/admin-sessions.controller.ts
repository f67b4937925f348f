import { Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { z } from 'zod';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { parseOrThrow } from '../common/zod-body.pipe';
import { SESSION_STATUSES } from '../sessions/session.types';
import { AdminConnectionsService } from './admin-connections.service';
import {
  decodeCursor,
  filterText,
  instant,
  type Page,
  pageQuery,
  splitParamFilters,
  uuid,
} from './admin-query';
import {
  AdminSessionsService,
  type SessionDetail,
  type SessionSummary,
} from './admin-sessions.service';
import { ApiDoc } from '../docs/api-doc';
import {
  disconnectedSchema,
  pageOf,
  sessionDetailSchema,
  sessionSummarySchema,
} from './admin-api.schema';

const sessionsQuery = z.strictObject({
  status: z.enum(SESSION_STATUSES).optional(),
  channel: filterText.optional(),
  subject: filterText.optional(),
  from: instant.optional(),
  to: instant.optional(),
  ...pageQuery,
});

@Controller('v1/admin/sessions')
@RequireScopes('admin')
export class AdminSessionsController {
  constructor(
    private readonly sessions: AdminSessionsService,
    private readonly connections: AdminConnectionsService,
  ) {}

  /** Sessions newest first, by status, channel, subject, creation time and `param.<key>=value`. */
  @Get()
  @ApiDoc({
    summary: 'Search sessions, newest first',
    description:
      'Filters combine with AND. `param.<key>=<value>` matches the business parameters of `open` ' +
      'by jsonb containment (GIN index), e.g. `?param.transactionId=TX-1`; a value that is a JSON ' +
      'number or boolean also matches that typed value. Keyset pages: pass `nextCursor` as `cursor`.',
    query: sessionsQuery,
    responses: { 200: pageOf(sessionSummarySchema) },
    errors: [400],
  })
  search(@Query() query: Record<string, unknown>): Promise<Page<SessionSummary>> {
    const { params, rest } = splitParamFilters(query);
    const q = parseOrThrow(sessionsQuery, rest, 'query');
    return this.sessions.search({
      ...q,
      params,
      cursor: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
    });
  }

  @Get(':id')
  @ApiDoc({
    summary: 'A session with its status history, connection audits, events, messages and recording',
    responses: { 200: sessionDetailSchema },
    errors: [400, 404],
  })
  detail(@CurrentPrincipal() admin: Principal, @Param('id') id: string): Promise<SessionDetail> {
    return this.sessions.detail(admin, parseOrThrow(uuid, id, 'session id'));
  }

  /** Closes the session's live WebSocket with 4003 (see AdminConnectionsService). */
  @Post(':id/disconnect')
  @HttpCode(200)
  @ApiDoc({
    summary:
      "Close a live session's WebSocket with 4003 on whichever node holds it (audited with the admin; 504 `undelivered`: that node did not answer in time)",
    responses: { 200: disconnectedSchema },
    errors: [400, 404, 504],
  })
  disconnect(
    @CurrentPrincipal() admin: Principal,
    @Param('id') id: string,
  ): Promise<z.output<typeof disconnectedSchema>> {
    return this.connections.disconnectSession(admin, parseOrThrow(uuid, id, 'session id'));
  }
}
