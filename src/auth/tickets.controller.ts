import { Controller, HttpCode, Post } from '@nestjs/common';
import { CurrentPrincipal, RequireScopes } from './auth.decorators';
import type { Principal } from './scopes';
import { TicketsService } from './tickets.service';

@Controller('v1/tickets')
export class TicketsController {
  constructor(private readonly tickets: TicketsService) {}

  /** A single-use ticket for browsers, which cannot set headers on a WebSocket. */
  @Post()
  @HttpCode(201)
  @RequireScopes('stream:publish')
  async create(
    @CurrentPrincipal() principal: Principal,
  ): Promise<{ ticket: string; expiresAt: string }> {
    const issued = await this.tickets.issue(principal);
    return { ticket: issued.ticket, expiresAt: issued.expiresAt.toISOString() };
  }
}
