import { Controller, Get, Param } from '@nestjs/common';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { ApiDoc } from '../docs/api-doc';
import { SessionsService, type SessionView, sessionViewSchema } from './sessions.service';

@Controller('v1/sessions')
export class SessionsController {
  constructor(private readonly sessions: SessionsService) {}

  @Get(':id')
  @RequireScopes('stream:publish', 'recording:read', 'admin')
  @ApiDoc({
    summary:
      "A session: status history, settings, counts and recording (the owner's or, for admin, any)",
    responses: { 200: sessionViewSchema },
    errors: [404, 429, 503],
  })
  get(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<SessionView> {
    return this.sessions.view(principal, id);
  }
}
