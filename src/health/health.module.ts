import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { AuditBacklogHealthIndicator } from './audit-backlog.health';
import { DiskHealthIndicator } from './disk.health';
import { FfmpegHealthIndicator } from './ffmpeg.health';
import { HealthController } from './health.controller';
import { MembershipHealthIndicator } from './membership.health';

@Module({
  imports: [TerminusModule.forRoot({ errorLogStyle: 'json', logger: false })],
  controllers: [HealthController],
  providers: [
    DiskHealthIndicator,
    FfmpegHealthIndicator,
    AuditBacklogHealthIndicator,
    MembershipHealthIndicator,
  ],
})
export class HealthModule {}
