import { Body, Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { ZodBodyPipe } from '../common/zod-body.pipe';
import { openSessionSchema, type OpenSession, type Opened } from '../protocol/open-session.schema';
import { SessionsService, type SessionView } from './sessions.service';

@Controller('v1/sessions')
export class SessionsController {
  constructor(private readonly sessions: SessionsService) {}

  /** Opens a session over HTTP (spec section 6): the body of `open`, answered with `opened`. */
  @Post()
  @HttpCode(201)
  @RequireScopes('stream:publish')
  create(
    @CurrentPrincipal() principal: Principal,
    @Body(new ZodBodyPipe(openSessionSchema)) body: OpenSession,
  ): Promise<Opened> {
    return this.sessions.create(principal, body);
  }

  @Get(':id')
  @RequireScopes('stream:publish', 'recording:read', 'admin')
  get(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<SessionView> {
    return this.sessions.view(principal, id);
  }
}
