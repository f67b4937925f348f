import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { RecordingEntity } from '../media/recording.entity';
import { SessionStore } from './session-store.service';
import { SessionEntity } from './session.entity';
import { SessionsController } from './sessions.controller';
import { SessionsService } from './sessions.service';

@Module({
  imports: [TypeOrmModule.forFeature([SessionEntity, RecordingEntity])],
  controllers: [SessionsController],
  providers: [SessionsService, SessionStore],
  exports: [SessionsService, SessionStore, TypeOrmModule],
})
export class SessionsModule {}
