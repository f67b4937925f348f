import {
  Inject,
  Injectable,
  type OnModuleDestroy,
  type OnModuleInit,
  Logger,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { isScope, type Principal } from './scopes';

export interface IssuedTicket {
  ticket: string;
  expiresAt: Date;
}

const PURGE_INTERVAL_MS = 10 * 60_000;

/**
 * Single-use WebSocket tickets (spec section 2). Only a hash is stored; consuming is one atomic
 * UPDATE ... WHERE consumed_at IS NULL, so of many concurrent uses, across processes, one wins.
 */
@Injectable()
export class TicketsService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(TicketsService.name);
  private purgeTimer: NodeJS.Timeout | undefined;

  constructor(
    @InjectDataSource() private readonly db: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.purgeTimer = setInterval(() => void this.purgeExpired(), PURGE_INTERVAL_MS);
    this.purgeTimer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.purgeTimer);
  }

  async issue(principal: Principal): Promise<IssuedTicket> {
    const ticket = randomBytes(32).toString('base64url');
    const ttlEnd = Date.now() + this.config.TICKET_TTL_MS;
    // A ticket never outlives the token it was issued for.
    const expiresAt = new Date(Math.min(ttlEnd, principal.expiresAt.getTime()));
    await this.db.query(
      `INSERT INTO tickets (id, token_hash, subject, channel, scopes, expires_at, token_expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        randomUUID(),
        hashTicket(ticket),
        principal.subject,
        principal.channel,
        principal.scopes,
        expiresAt,
        principal.expiresAt,
      ],
    );
    return { ticket, expiresAt };
  }

  /** Consumes a ticket once; unknown, used and expired tickets are all `invalid_token`. */
  async consume(ticket: string): Promise<Principal> {
    if (!/^[A-Za-z0-9_-]{20,100}$/.test(ticket)) {
      throw new AppError(ErrorCode.InvalidToken, 'ticket is malformed');
    }
    type Row = { subject: string; channel: string; scopes: string[]; token_expires_at: Date };
    // For UPDATE ... RETURNING, TypeORM's postgres driver answers [rows, affectedCount].
    const [rows] = await this.db.query<[Row[], number]>(
      `UPDATE tickets SET consumed_at = now()
       WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > now()
       RETURNING subject, channel, scopes, token_expires_at`,
      [hashTicket(ticket)],
    );
    const row = rows[0];
    if (!row) {
      throw new AppError(ErrorCode.InvalidToken, 'ticket is unknown, used or expired');
    }
    return {
      subject: row.subject,
      channel: row.channel,
      scopes: row.scopes.filter(isScope),
      expiresAt: new Date(row.token_expires_at),
    };
  }

  private async purgeExpired(): Promise<void> {
    try {
      await this.db.query(`DELETE FROM tickets WHERE expires_at < now() - interval '1 day'`);
    } catch (err) {
      this.logger.warn({ err }, 'could not purge expired tickets');
    }
  }
}

function hashTicket(ticket: string): string {
  return createHash('sha256').update(ticket).digest('hex');
}
