import { Controller, HttpCode, Post } from '@nestjs/common';
import { z } from 'zod';
import { ApiDoc } from '../docs/api-doc';
import { CurrentPrincipal, RequireScopes } from './auth.decorators';
import type { Principal } from './scopes';
import { TicketsService } from './tickets.service';

/** A ticket for `wss://…/v1/stream?ticket=…`, single use, short-lived. */
const ticketSchema = z.strictObject({ ticket: z.string(), expiresAt: z.string() });

@Controller('v1/tickets')
export class TicketsController {
  constructor(private readonly tickets: TicketsService) {}

  /** A single-use ticket for browsers, which cannot set headers on a WebSocket. */
  @Post()
  @HttpCode(201)
  @RequireScopes('stream:publish')
  @ApiDoc({
    summary: 'A single-use ticket for a WebSocket upgrade (browsers cannot set headers on one)',
    responses: { 201: ticketSchema },
    errors: [429, 503],
  })
  async create(@CurrentPrincipal() principal: Principal): Promise<z.output<typeof ticketSchema>> {
    const issued = await this.tickets.issue(principal);
    return { ticket: issued.ticket, expiresAt: issued.expiresAt.toISOString() };
  }
}
