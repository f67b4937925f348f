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
  detail(@CurrentPrincipal() admin: Principal, @Param('id') id: string): Promise<SessionDetail> {
    return this.sessions.detail(admin, parseOrThrow(uuid, id, 'session id'));
  }

  /** Closes the session's live WebSocket with 4003 (see AdminConnectionsService). */
  @Post(':id/disconnect')
  @HttpCode(200)
  disconnect(
    @CurrentPrincipal() admin: Principal,
    @Param('id') id: string,
  ): Promise<{ sessionId: string; disconnected: boolean }> {
    return this.connections.disconnectSession(admin, parseOrThrow(uuid, id, 'session id'));
  }
}
