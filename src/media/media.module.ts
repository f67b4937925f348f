import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { SessionMessageEntity } from '../sessions/session-message.entity';
import { SessionsModule } from '../sessions/sessions.module';
import { StorageModule } from '../storage/storage.module';
import { DecodeCheckService } from './decode-check.service';
import { MediaAdminController } from './media-admin.controller';
import { RecordingEntity } from './recording.entity';
import { RecordingService } from './recording.service';
import { RecordingUploadService } from './recording-upload.service';
import { RecordingsController } from './recordings.controller';
import { RetentionService } from './retention.service';

/**
 * ffmpeg and sharp behind small services: live recording, decode checks, uploads to object
 * storage, retrieval, retention.
 */
@Module({
  imports: [
    SessionsModule,
    StorageModule,
    TypeOrmModule.forFeature([RecordingEntity, SessionMessageEntity]),
  ],
  controllers: [RecordingsController, MediaAdminController],
  providers: [RecordingService, RetentionService, DecodeCheckService, RecordingUploadService],
  exports: [RecordingService, RetentionService, RecordingUploadService, StorageModule],
})
export class MediaModule {}
