import { Check, Column, Entity, Index, PrimaryColumn } from 'typeorm';

export const WEBHOOK_STATES = ['pending', 'delivered', 'gave_up'] as const;
/** `pending` until an attempt is answered 2xx (`delivered`) or no attempt is left (`gave_up`). */
export type WebhookState = (typeof WEBHOOK_STATES)[number];

/**
 * One webhook to deliver, once per idempotency id however often it is enqueued. Its attempts are
 * audited in webhook_attempts; pg-boss carries the retries (job id = this id).
 */
@Entity('webhook_deliveries')
@Index('ux_webhook_deliveries_idempotency_id', ['idempotencyId'], { unique: true })
@Index('ix_webhook_deliveries_created_id', ['createdAt', 'id'])
@Index('ix_webhook_deliveries_state_created_id', ['state', 'createdAt', 'id'])
@Check('ck_webhook_deliveries_state', `state IN ('pending', 'delivered', 'gave_up')`)
@Check('ck_webhook_deliveries_attempts', `attempts >= 0`)
export class WebhookDeliveryEntity {
  @PrimaryColumn('uuid')
  id!: string;

  /** The caller's id (e.g. `<jobId>:completed`), sent as Framegate-Webhook-Id and the body's `id`. */
  @Column('text', { name: 'idempotency_id' })
  idempotencyId!: string;

  /** Whose webhook it is (the job owner's subject). */
  @Column('text')
  subject!: string;

  @Column('text')
  event!: string;

  @Column('text')
  url!: string;

  /** The body's `data`. */
  @Column('jsonb')
  payload!: Record<string, unknown>;

  /** Signs every attempt; cleared once the delivery is final. Never returned by any API. */
  @Column('text', { nullable: true })
  secret!: string | null;

  @Column('text')
  state!: WebhookState;

  @Column('integer', { default: 0 })
  attempts!: number;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'last_attempt_at', nullable: true })
  lastAttemptAt!: Date | null;

  @Column('timestamptz', { name: 'delivered_at', nullable: true })
  deliveredAt!: Date | null;
}
