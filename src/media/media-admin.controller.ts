import { Controller, Get } from '@nestjs/common';
import { RequireScopes } from '../auth/auth.decorators';
import { RecordingService } from './recording.service';

@Controller('v1/admin/recording')
export class MediaAdminController {
  constructor(private readonly recordings: RecordingService) {}

  /** Encoder slots in use and each live recorder's backlog (frames stored, not yet encoded). */
  @Get()
  @RequireScopes('admin')
  status(): ReturnType<RecordingService['status']> {
    return this.recordings.status();
  }
}
