import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AuthModule } from '../auth/auth.module';
import { MediaModule } from '../media/media.module';
import { SessionsModule } from '../sessions/sessions.module';
import { FreeSpace } from '../spool/free-space';
import { CapacityService } from './capacity.service';
import { ChannelQuotaEntity } from './channel-quota.entity';
import { DrainService } from './drain.service';
import { FallbackController } from './fallback.controller';
import { HandshakeService } from './handshake.service';
import { MessagePush } from './message-push.service';
import { QuotaService } from './quota.service';
import { SessionRegistry } from './session-registry.service';
import { StreamConnections } from './stream-connections.service';
import { StreamGateway } from './stream.gateway';

@Module({
  imports: [
    AuthModule,
    SessionsModule,
    MediaModule,
    TypeOrmModule.forFeature([ChannelQuotaEntity]),
  ],
  controllers: [FallbackController],
  providers: [
    StreamGateway,
    CapacityService,
    HandshakeService,
    MessagePush,
    QuotaService,
    SessionRegistry,
    StreamConnections,
    DrainService,
    FreeSpace,
  ],
  exports: [CapacityService, SessionRegistry, DrainService, QuotaService, StreamConnections],
})
export class StreamModule {}
