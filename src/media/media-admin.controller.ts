import { Controller, Get } from '@nestjs/common';
import { RequireScopes } from '../auth/auth.decorators';
import { ApiDoc } from '../docs/api-doc';
import { RecordingService, recordingStatusSchema } from './recording.service';

@Controller('v1/admin/recording')
export class MediaAdminController {
  constructor(private readonly recordings: RecordingService) {}

  /** Encoder slots in use and each live recorder's backlog (frames stored, not yet encoded). */
  @Get()
  @RequireScopes('admin')
  @ApiDoc({
    summary: "Encoder slots, image work and each live recorder's backlog",
    responses: { 200: recordingStatusSchema },
  })
  status(): ReturnType<RecordingService['status']> {
    return this.recordings.status();
  }
}
