import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { MediaModule } from '../media/media.module';
import { SessionsModule } from '../sessions/sessions.module';
import { StreamModule } from '../stream/stream.module';
import { WebhooksModule } from '../webhooks/webhooks.module';
import { JobBudget } from './job-budget';
import { JobInputs } from './job-inputs.service';
import { JobNotifier } from './job-notifier.service';
import { JobPaths } from './job-paths';
import { JobRetention } from './job-retention.service';
import { JobRunner } from './job-runner.service';
import { MediaJobEntity, MediaJobEventEntity } from './media-job.entity';
import { MediaJobsController } from './media-jobs.controller';
import { MediaJobsService } from './media-jobs.service';

/**
 * Media jobs (`/v1/media/jobs`, scope `media:process`): the API, uploads and recording inputs,
 * the runner on the pg-boss queue `media-job` (sharing the encoder budget with live recording),
 * retention, webhooks at each job's end. The engine below it (src/jobs/engine) runs ffmpeg.
 */
@Module({
  imports: [
    SessionsModule,
    MediaModule,
    StreamModule,
    WebhooksModule,
    TypeOrmModule.forFeature([MediaJobEntity, MediaJobEventEntity]),
  ],
  controllers: [MediaJobsController],
  providers: [
    {
      provide: JobPaths,
      useFactory: (config: AppConfig) => new JobPaths(config.DATA_DIR),
      inject: [APP_CONFIG],
    },
    JobBudget,
    JobInputs,
    JobNotifier,
    JobRunner,
    JobRetention,
    MediaJobsService,
  ],
  exports: [JobRunner, JobRetention, MediaJobsService],
})
export class JobsModule {}
