import { Controller, Get, Query } from '@nestjs/common';
import { z } from 'zod';
import { decodeCursor, filterText, instant, type Page, pageQuery } from '../admin/admin-query';
import { pageOf } from '../admin/admin-api.schema';
import { RequireScopes } from '../auth/auth.decorators';
import { parseOrThrow } from '../common/zod-body.pipe';
import { ApiDoc } from '../docs/api-doc';
import { type WebhookDeliveryView, webhookDeliveryViewSchema } from './webhook-api.schema';
import { WEBHOOK_STATES } from './webhook-delivery.entity';
import { WebhooksAdminService } from './webhooks-admin.service';

const webhooksQuery = z.strictObject({
  state: z.enum(WEBHOOK_STATES).optional(),
  event: filterText.optional(),
  subject: filterText.optional(),
  idempotencyId: filterText.optional(),
  from: instant.optional(),
  to: instant.optional(),
  ...pageQuery,
});

@Controller('v1/admin/webhooks')
@RequireScopes('admin')
export class WebhooksAdminController {
  constructor(private readonly webhooks: WebhooksAdminService) {}

  @Get()
  @ApiDoc({
    summary: 'Webhook deliveries, newest first, with every attempt (never their secrets)',
    query: webhooksQuery,
    responses: { 200: pageOf(webhookDeliveryViewSchema) },
    errors: [400],
  })
  list(@Query() query: Record<string, unknown>): Promise<Page<WebhookDeliveryView>> {
    const q = parseOrThrow(webhooksQuery, query, 'query');
    return this.webhooks.list({
      ...q,
      cursor: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
    });
  }
}
