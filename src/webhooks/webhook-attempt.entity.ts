import { Check, Column, Entity, ForeignKey, Index, PrimaryColumn } from 'typeorm';
import { WebhookDeliveryEntity } from './webhook-delivery.entity';

export const ATTEMPT_OUTCOMES = [
  'delivered',
  'failed',
  'rejected',
  'blocked',
  'interrupted',
] as const;
/**
 * `delivered`: answered 2xx. `failed`: no answer, or one worth retrying (5xx, 3xx, 408, 429).
 * `rejected`: the receiver refused it (another 4xx): no retry. `blocked`: the destination
 * resolved to an address the policy refuses: nothing sent, no retry. `interrupted`: the node
 * stopped during the attempt (set when the next attempt starts, or when the delivery gives up).
 */
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

/** The audit of one delivery attempt: written when it starts, completed when it ends. */
@Entity('webhook_attempts')
@Index('ux_webhook_attempts_delivery_attempt', ['deliveryId', 'attempt'], { unique: true })
@Check(
  'ck_webhook_attempts_outcome',
  `outcome IN ('delivered', 'failed', 'rejected', 'blocked', 'interrupted')`,
)
export class WebhookAttemptEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('uuid', { name: 'delivery_id' })
  @ForeignKey(() => WebhookDeliveryEntity, {
    name: 'fk_webhook_attempts_delivery',
    onDelete: 'CASCADE',
  })
  deliveryId!: string;

  /** 1 for the first attempt of the delivery. */
  @Column('integer')
  attempt!: number;

  @Column('timestamptz')
  at!: Date;

  /** The node that made it. */
  @Column('text')
  node!: string;

  /** Null while the attempt runs (or when its node stopped during it). */
  @Column('text', { nullable: true })
  outcome!: AttemptOutcome | null;

  @Column('integer', { name: 'duration_ms', nullable: true })
  durationMs!: number | null;

  @Column('integer', { name: 'status_code', nullable: true })
  statusCode!: number | null;

  /** Why there was no answer (or why it was blocked). */
  @Column('text', { nullable: true })
  error!: string | null;

  /** The first RESPONSE_EXCERPT_BYTES of the answer's body. */
  @Column('text', { name: 'response_excerpt', nullable: true })
  responseExcerpt!: string | null;
}
