import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** A single-use WebSocket ticket; only its sha256 is stored. */
@Entity('tickets')
@Index('ux_tickets_hash', ['tokenHash'], { unique: true })
@Index('ix_tickets_expires', ['expiresAt'])
export class TicketEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('text', { name: 'token_hash' })
  tokenHash!: string;

  @Column('text')
  subject!: string;

  @Column('text')
  channel!: string;

  @Column('text', { array: true })
  scopes!: string[];

  @Column('timestamptz', { name: 'expires_at' })
  expiresAt!: Date;

  /** Expiry of the access token the ticket was issued for; the connection inherits it. */
  @Column('timestamptz', { name: 'token_expires_at' })
  tokenExpiresAt!: Date;

  @Column('timestamptz', { name: 'consumed_at', nullable: true })
  consumedAt!: Date | null;

  @Column('timestamptz', { name: 'created_at', default: () => 'now()' })
  createdAt!: Date;
}
