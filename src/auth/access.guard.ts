import { type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { PUBLIC_KEY, SCOPES_KEY } from './auth.decorators';
import { hasScope, type Principal, type Scope } from './scopes';
import { invalidToken } from './token-verifier.service';

/**
 * The global guard: every route is authenticated with a bearer token and must declare the scopes
 * it needs (`@RequireScopes`) unless marked `@Public()`; a route that declares neither is refused,
 * so forgetting a decorator fails closed.
 */
@Injectable()
export class AccessGuard extends AuthGuard('jwt') {
  constructor(private readonly reflector: Reflector) {
    super();
  }

  override async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets)) {
      return true;
    }
    const scopes = this.reflector.getAllAndOverride<Scope[] | undefined>(SCOPES_KEY, targets);
    if (!scopes) {
      throw new Error(
        `route ${context.getClass().name}.${context.getHandler().name} declares no scopes`,
      );
    }
    await super.canActivate(context);
    const principal = context.switchToHttp().getRequest<{ user: Principal }>().user;
    if (!scopes.some((s) => hasScope(principal, s))) {
      throw new AppError(
        ErrorCode.InsufficientScope,
        `this needs the scope ${scopes.join(' or ')}`,
      );
    }
    return true;
  }

  override handleRequest<T = Principal>(err: unknown, user: T | false, info: unknown): T {
    if (err || !user) {
      throw invalidToken(err ?? info);
    }
    return user;
  }
}
