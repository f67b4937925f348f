import {
  applyDecorators,
  createParamDecorator,
  type ExecutionContext,
  SetMetadata,
} from '@nestjs/common';
import { ApiBearerAuth, ApiExtension } from '@nestjs/swagger';
import { errorResponse } from '../docs/api-doc';
import type { Principal, Scope } from './scopes';

export const SCOPES_KEY = 'framegate:scopes';
export const PUBLIC_KEY = 'framegate:public';

/**
 * The route needs a valid access token carrying at least one of these scopes. The same decorator
 * documents it in OpenAPI (bearer security, `x-required-scopes`, the 401 and 403 answers), so the
 * description cannot drift from what is enforced.
 */
export const RequireScopes = (...scopes: [Scope, ...Scope[]]) =>
  applyDecorators(
    SetMetadata(SCOPES_KEY, scopes),
    ApiBearerAuth(),
    ApiExtension('x-required-scopes', scopes),
    errorResponse(401, 'No valid access token (`invalid_token`)'),
    errorResponse(
      403,
      `The token lacks a scope: one of ${scopes.join(', ')} (\`insufficient_scope\`)`,
    ),
  );

/** The route needs no credentials (health probes). Every other route must declare scopes. */
export const Public = () => SetMetadata(PUBLIC_KEY, true);

/** The authenticated principal of the request. */
export const CurrentPrincipal = createParamDecorator(
  (_data: unknown, ctx: ExecutionContext): Principal =>
    ctx.switchToHttp().getRequest<{ user: Principal }>().user,
);
