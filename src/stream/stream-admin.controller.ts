import { Controller, HttpCode, Param, Post } from '@nestjs/common';
import { RequireScopes } from '../auth/auth.decorators';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { ApiDoc } from '../docs/api-doc';
import { NodeMetrics } from '../metrics/node-metrics.service';
import { z } from 'zod';
import { SessionRegistry } from './session-registry.service';
import { StreamConnection } from './stream-connection';

const disconnectedSchema = z.strictObject({
  sessionId: z.string().uuid(),
  /** False when the session was live but had no WebSocket to close. */
  disconnected: z.boolean(),
});

@Controller('v1/admin/sessions')
export class StreamAdminController {
  constructor(
    private readonly registry: SessionRegistry,
    private readonly metrics: NodeMetrics,
  ) {}

  /**
   * Disconnects the live WebSocket of a session with 4003 (the client should stop); the session
   * is interrupted and ends as abandoned unless resumed within its window. `disconnected: true`
   * is answered once the session is detached, not merely once the close frame is queued.
   */
  @Post(':id/disconnect')
  @HttpCode(200)
  @RequireScopes('admin')
  @ApiDoc({
    summary: "Close a live session's WebSocket with 4003",
    responses: { 200: disconnectedSchema },
    errors: [404],
  })
  async disconnect(@Param('id') id: string): Promise<z.output<typeof disconnectedSchema>> {
    const runtime = this.registry.get(id);
    if (!runtime) {
      throw new AppError(ErrorCode.NotFound, 'no live session with this id on this node');
    }
    const sink = runtime.attached;
    if (!(sink instanceof StreamConnection)) {
      return { sessionId: id, disconnected: false };
    }
    this.metrics.adminActions.inc(['disconnect']);
    await sink.kick(runtime);
    return { sessionId: id, disconnected: true };
  }
}
