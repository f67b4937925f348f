import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TypeOrmHealthIndicator } from '@nestjs/terminus';
import { Public } from '../auth/auth.decorators';
import { AuditBacklogHealthIndicator } from './audit-backlog.health';
import { DiskHealthIndicator } from './disk.health';
import { FfmpegHealthIndicator } from './ffmpeg.health';

@Controller('health')
@Public()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly db: TypeOrmHealthIndicator,
    private readonly disk: DiskHealthIndicator,
    private readonly ffmpeg: FfmpegHealthIndicator,
    private readonly auditBacklog: AuditBacklogHealthIndicator,
  ) {}

  /** The process is up and its event loop answers. */
  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([]);
  }

  /** Ready for traffic: database, disk, ffmpeg and audit backlog all fine. */
  @Get('ready')
  @HealthCheck()
  ready() {
    return this.health.check([
      () => this.db.pingCheck('database', { timeout: 1_500 }),
      () => this.disk.check('disk'),
      () => this.ffmpeg.check('ffmpeg'),
      () => this.auditBacklog.check('audit'),
    ]);
  }
}
