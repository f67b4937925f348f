import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { SessionMessageEntity } from '../sessions/session-message.entity';
import { SessionEntity } from '../sessions/session.entity';
import { SessionsModule } from '../sessions/sessions.module';
import { StorageModule } from '../storage/storage.module';
import { DecodeCheckService } from './decode-check.service';
import { MediaAdminController } from './media-admin.controller';
import { RecordingEntity } from './recording.entity';
import { RecordingService } from './recording.service';
import { RecordingWorkStore } from './recording-work.store';
import { RecordingWorker } from './recording-worker.service';
import { RemoteRecordings } from './remote-recordings.service';
import { RecordingUploadService } from './recording-upload.service';
import { RecordingsController } from './recordings.controller';
import { RetentionService } from './retention.service';

/**
 * ffmpeg and sharp behind small services: live recording, decode checks, uploads to object
 * storage, retrieval, retention; with NODE_ROLE gateway/worker, recording work handed from
 * gateways to workers.
 */
@Module({
  imports: [
    SessionsModule,
    StorageModule,
    TypeOrmModule.forFeature([RecordingEntity, SessionMessageEntity, SessionEntity]),
  ],
  controllers: [RecordingsController, MediaAdminController],
  providers: [
    RecordingService,
    RetentionService,
    DecodeCheckService,
    RecordingUploadService,
    RecordingWorkStore,
    RemoteRecordings,
    RecordingWorker,
  ],
  exports: [
    RecordingService,
    RetentionService,
    RecordingUploadService,
    StorageModule,
    RecordingWorker,
  ],
})
export class MediaModule {}
