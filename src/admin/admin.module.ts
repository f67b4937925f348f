import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuditModule } from '../audit/audit.module';
import { MediaModule } from '../media/media.module';
import { SessionsModule } from '../sessions/sessions.module';
import { ChannelQuotaEntity } from '../stream/channel-quota.entity';
import { StreamModule } from '../stream/stream.module';
import { AdminAuditsController } from './admin-audits.controller';
import { AdminAuditsService } from './admin-audits.service';
import { AdminChannelsController } from './admin-channels.controller';
import { AdminChannelsService } from './admin-channels.service';
import { AdminConnectionsController } from './admin-connections.controller';
import { AdminConnectionsService } from './admin-connections.service';
import { AdminNodesController } from './admin-nodes.controller';
import { AdminSessionsController } from './admin-sessions.controller';
import { AdminSessionsService } from './admin-sessions.service';
import { AdminStatsController } from './admin-stats.controller';
import { AdminStatsService } from './admin-stats.service';

/** The admin REST API under /v1/admin (scope `admin`). */
@Module({
  imports: [
    AuditModule,
    SessionsModule,
    MediaModule,
    StreamModule,
    TypeOrmModule.forFeature([ChannelQuotaEntity]),
  ],
  controllers: [
    AdminSessionsController,
    AdminConnectionsController,
    AdminAuditsController,
    AdminChannelsController,
    AdminStatsController,
    AdminNodesController,
  ],
  providers: [
    AdminSessionsService,
    AdminConnectionsService,
    AdminAuditsService,
    AdminChannelsService,
    AdminStatsService,
  ],
})
export class AdminModule {}
