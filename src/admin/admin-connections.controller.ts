import { Controller, Delete, Get, HttpCode, Param, Query } from '@nestjs/common';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { parseOrThrow } from '../common/zod-body.pipe';
import type { ConnectionInfo } from '../stream/stream-connection';
import { AdminConnectionsService } from './admin-connections.service';
import { z } from 'zod';
import { filterText, uuid } from './admin-query';
import { ApiDoc } from '../docs/api-doc';
import { connectionListSchema, kickedSchema } from './admin-api.schema';
import type { Kicked } from './admin-connections.service';

const listQuery = z.strictObject({
  /** One node's connections only (its NODE_ID). */
  node: filterText.optional(),
});

@Controller('v1/admin/connections')
@RequireScopes('admin')
export class AdminConnectionsController {
  constructor(private readonly connections: AdminConnectionsService) {}

  /** The cluster's live WebSocket connections (or one node's, `?node=`), oldest first. */
  @Get()
  @ApiDoc({
    summary:
      "Live WebSocket connections of every node (or one node's with `?node=`), oldest first, from their leases",
    query: listQuery,
    responses: { 200: connectionListSchema },
    errors: [400],
  })
  list(
    @Query() query: Record<string, unknown>,
  ): Promise<{ node: string; items: ConnectionInfo[] }> {
    return this.connections.list(parseOrThrow(listQuery, query, 'query').node);
  }

  /**
   * Closes a live connection with 4003 on whichever node holds it; its audit row says `kicked`
   * and names the admin. 504 `undelivered` when that node is dead or does not answer in time.
   */
  @Delete(':id')
  @HttpCode(200)
  @ApiDoc({
    summary:
      'Kick a live connection on any node: close 4003, audited `kicked` with the admin (504 `undelivered`: its node is dead or did not answer within CLUSTER_REQUEST_TIMEOUT_MS)',
    responses: { 200: kickedSchema },
    errors: [400, 404, 504],
  })
  kick(@CurrentPrincipal() admin: Principal, @Param('id') id: string): Promise<Kicked> {
    return this.connections.kick(admin, parseOrThrow(uuid, id, 'connection id'));
  }
}
