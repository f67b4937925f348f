import { createParamDecorator, type ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Principal, Scope } from './scopes';

export const SCOPES_KEY = 'framegate:scopes';
export const PUBLIC_KEY = 'framegate:public';

/** The route needs a valid access token carrying at least one of these scopes. */
export const RequireScopes = (...scopes: [Scope, ...Scope[]]) => SetMetadata(SCOPES_KEY, scopes);

/** The route needs no credentials (health probes). Every other route must declare scopes. */
export const Public = () => SetMetadata(PUBLIC_KEY, true);

/** The authenticated principal of the request. */
export const CurrentPrincipal = createParamDecorator(
  (_data: unknown, ctx: ExecutionContext): Principal =>
    ctx.switchToHttp().getRequest<{ user: Principal }>().user,
);
