import { Controller, HttpCode, Param, Post } from '@nestjs/common';
import { RequireScopes } from '../auth/auth.decorators';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { NodeMetrics } from '../metrics/node-metrics.service';
import { SessionRegistry } from './session-registry.service';
import { StreamConnection } from './stream-connection';

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
  async disconnect(@Param('id') id: string): Promise<{ sessionId: string; disconnected: boolean }> {
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
