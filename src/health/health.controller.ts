import { Controller, Get, Req, Res, ServiceUnavailableException } from '@nestjs/common';
import {
  HealthCheck,
  type HealthCheckResult,
  HealthCheckService,
  TypeOrmHealthIndicator,
} from '@nestjs/terminus';
import { ApiOperation } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { Public } from '../auth/auth.decorators';
import { hasScope, type Principal } from '../auth/scopes';
import { AuditBacklogHealthIndicator } from './audit-backlog.health';
import { DiskHealthIndicator } from './disk.health';
import { FfmpegHealthIndicator } from './ffmpeg.health';
import { MembershipHealthIndicator } from './membership.health';

@Controller('health')
@Public()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly db: TypeOrmHealthIndicator,
    private readonly disk: DiskHealthIndicator,
    private readonly ffmpeg: FfmpegHealthIndicator,
    private readonly auditBacklog: AuditBacklogHealthIndicator,
    private readonly membership: MembershipHealthIndicator,
  ) {}

  /** The process is up and its event loop answers. */
  @Get('live')
  @HealthCheck()
  @ApiOperation({ summary: 'Liveness: the process is up and its event loop answers' })
  live() {
    return this.health.check([]);
  }

  /**
   * Ready for traffic: database, disk, ffmpeg, audit backlog and this node's heartbeat all fine;
   * 200 or 503. Anyone gets
   * the status; the checks' details (DATA_DIR, the ffmpeg path and version, backlog) only a caller
   * with the `admin` scope, as terminus' JSON.
   */
  @Get('ready')
  @HealthCheck()
  @ApiOperation({
    summary:
      'Readiness: database, disk, ffmpeg, audit backlog and node heartbeat (details with the admin scope)',
  })
  async ready(
    @Req() req: Request & { user?: Principal },
    @Res({ passthrough: true }) res: Response,
  ): Promise<HealthCheckResult | { status: HealthCheckResult['status'] }> {
    let result: HealthCheckResult;
    try {
      result = await this.health.check([
        () => this.db.pingCheck('database', { timeout: 1_500 }),
        () => this.disk.check('disk'),
        () => this.ffmpeg.check('ffmpeg'),
        () => this.auditBacklog.check('audit'),
        () => this.membership.check('membership'),
      ]);
    } catch (err) {
      // Terminus reports failed checks as a 503 carrying the full result.
      if (!(err instanceof ServiceUnavailableException)) {
        throw err;
      }
      result = err.getResponse() as HealthCheckResult;
      res.status(503);
    }
    return req.user && hasScope(req.user, 'admin') ? result : { status: result.status };
  }
}
