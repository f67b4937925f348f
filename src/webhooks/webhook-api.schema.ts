import { z } from 'zod';
import { ATTEMPT_OUTCOMES } from './webhook-attempt.entity';
import { WEBHOOK_STATES } from './webhook-delivery.entity';

/** One audited attempt of a delivery (`outcome` null: under way, or its node is gone). */
export const webhookAttemptViewSchema = z.strictObject({
  attempt: z.number().int().min(1),
  at: z.string(),
  node: z.string(),
  outcome: z.enum(ATTEMPT_OUTCOMES).nullable(),
  durationMs: z.number().int().nullable(),
  statusCode: z.number().int().nullable(),
  error: z.string().nullable(),
  /** The first 1024 bytes of the receiver's answer. */
  responseExcerpt: z.string().nullable(),
});
export type WebhookAttemptView = z.output<typeof webhookAttemptViewSchema>;

/** A delivery as the admin API shows it: never its secret; its payload stays in the database. */
export const webhookDeliveryViewSchema = z.strictObject({
  id: z.string().uuid(),
  idempotencyId: z.string(),
  subject: z.string(),
  event: z.string(),
  url: z.string(),
  state: z.enum(WEBHOOK_STATES),
  createdAt: z.string(),
  lastAttemptAt: z.string().nullable(),
  deliveredAt: z.string().nullable(),
  attempts: z.array(webhookAttemptViewSchema),
});
export type WebhookDeliveryView = z.output<typeof webhookDeliveryViewSchema>;
