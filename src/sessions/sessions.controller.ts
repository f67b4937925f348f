import { Controller, Get, Param } from '@nestjs/common';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { SessionsService, type SessionView } from './sessions.service';

@Controller('v1/sessions')
export class SessionsController {
  constructor(private readonly sessions: SessionsService) {}

  @Get(':id')
  @RequireScopes('stream:publish', 'recording:read', 'admin')
  get(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<SessionView> {
    return this.sessions.view(principal, id);
  }
}
