import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { SessionMessageEntity } from '../sessions/session-message.entity';
import { SessionsModule } from '../sessions/sessions.module';
import { DecodeCheckService } from './decode-check.service';
import { MediaAdminController } from './media-admin.controller';
import { RecordingEntity } from './recording.entity';
import { RecordingService } from './recording.service';
import { RecordingsController } from './recordings.controller';
import { RetentionService } from './retention.service';

/** ffmpeg and sharp behind small services: live recording, decode checks, retrieval, retention. */
@Module({
  imports: [SessionsModule, TypeOrmModule.forFeature([RecordingEntity, SessionMessageEntity])],
  controllers: [RecordingsController, MediaAdminController],
  providers: [RecordingService, RetentionService, DecodeCheckService],
  exports: [RecordingService, RetentionService],
})
export class MediaModule {}
