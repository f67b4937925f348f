import { Controller, Delete, Get, HttpCode, Param, Query } from '@nestjs/common';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { parseOrThrow } from '../common/zod-body.pipe';
import type { ConnectionInfo } from '../stream/stream-connection';
import { AdminConnectionsService } from './admin-connections.service';
import { noQuery, uuid } from './admin-query';
import { ApiDoc } from '../docs/api-doc';
import { connectionListSchema, kickedSchema } from './admin-api.schema';

@Controller('v1/admin/connections')
@RequireScopes('admin')
export class AdminConnectionsController {
  constructor(private readonly connections: AdminConnectionsService) {}

  /** This node's live WebSocket connections, oldest first. */
  @Get()
  @ApiDoc({
    summary: "This node's live WebSocket connections, oldest first",
    responses: { 200: connectionListSchema },
    errors: [400],
  })
  list(@Query() query: Record<string, unknown>): { node: string; items: ConnectionInfo[] } {
    parseOrThrow(noQuery, query, 'query');
    return this.connections.list();
  }

  /** Closes a live connection with 4003; its audit row says `kicked` and names the admin. */
  @Delete(':id')
  @HttpCode(200)
  @ApiDoc({
    summary: 'Kick a live connection: close 4003, audited `kicked` with the admin',
    responses: { 200: kickedSchema },
    errors: [400, 404],
  })
  kick(
    @CurrentPrincipal() admin: Principal,
    @Param('id') id: string,
  ): Promise<{ connectionId: string; sessionId: string | null; kicked: true }> {
    return this.connections.kick(admin, parseOrThrow(uuid, id, 'connection id'));
  }
}
