import { Module } from '@nestjs/common';
import { RecordingStore } from './recording-store';

/** S3-compatible object storage for recordings (RECORDINGS_S3_URL). */
@Module({
  providers: [RecordingStore],
  exports: [RecordingStore],
})
export class StorageModule {}
