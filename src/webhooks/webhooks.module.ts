import { Module } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { WebhookSender } from './webhook-sender';
import { webhookUrlPolicy } from './webhook-url';
import { WebhookService } from './webhook.service';
import { WebhooksAdminController } from './webhooks-admin.controller';
import { WebhooksAdminService } from './webhooks-admin.service';

/** Signed webhooks with durable retries (docs/webhooks.md); the jobs API enqueues them. */
@Module({
  controllers: [WebhooksAdminController],
  providers: [
    WebhookService,
    WebhooksAdminService,
    {
      provide: WebhookSender,
      useFactory: (config: AppConfig) =>
        new WebhookSender({
          policy: webhookUrlPolicy(config),
          timeoutMs: config.WEBHOOK_TIMEOUT_MS,
        }),
      inject: [APP_CONFIG],
    },
  ],
  exports: [WebhookService],
})
export class WebhooksModule {}
