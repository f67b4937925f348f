import { type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import { AuditWriter } from '../audit/audit-writer.service';
import { httpRefusal } from '../audit/http-refusal';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { compileTrust, remoteAddressOf, type TrustFn } from '../common/remote-address';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { PUBLIC_KEY, SCOPES_KEY } from './auth.decorators';
import { hasScope, type Principal, type Scope } from './scopes';
import { invalidToken } from './token-verifier.service';

/**
 * The global guard: every route is authenticated with a bearer token and must declare the scopes
 * it needs (`@RequireScopes`) unless marked `@Public()`; a route that declares neither is refused,
 * so forgetting a decorator fails closed. Guards run before any body is read: routes read their
 * bodies themselves, after this (see src/http/).
 */
@Injectable()
export class AccessGuard extends AuthGuard('jwt') {
  private readonly trust: TrustFn;

  constructor(
    private readonly reflector: Reflector,
    private readonly audit: AuditWriter,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    super();
    this.trust = compileTrust(config.TRUST_PROXY);
  }

  override async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    const req = context.switchToHttp().getRequest<Request & { user?: Principal }>();
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets)) {
      // A public route serves anyone, and more to a caller whose token it verified (readiness
      // details need `admin`); a token presented and refused is refused like anywhere else.
      if (req.headers.authorization !== undefined) {
        await this.authenticate(context, req);
      }
      return true;
    }
    const scopes = this.reflector.getAllAndOverride<Scope[] | undefined>(SCOPES_KEY, targets);
    if (!scopes) {
      throw new Error(
        `route ${context.getClass().name}.${context.getHandler().name} declares no scopes`,
      );
    }
    const principal = await this.authenticate(context, req);
    if (!scopes.some((s) => hasScope(principal, s))) {
      this.recordRejection(req, ErrorCode.InsufficientScope, principal);
      throw new AppError(
        ErrorCode.InsufficientScope,
        `this needs the scope ${scopes.join(' or ')}`,
      );
    }
    return true;
  }

  private async authenticate(
    context: ExecutionContext,
    req: Request & { user?: Principal },
  ): Promise<Principal> {
    try {
      await super.canActivate(context);
    } catch (err) {
      this.recordRejection(req, err instanceof AppError ? err.code : ErrorCode.InvalidToken);
      throw err;
    }
    return req.user as Principal;
  }

  /** Refused credentials on the REST side are audited like refused handshakes. */
  private recordRejection(req: Request, error: ErrorCode, principal?: Principal): void {
    this.audit.record(
      httpRefusal(req, {
        node: this.config.NODE_ID,
        remoteAddress: remoteAddressOf(req, this.trust),
        outcome: 'rejected_auth',
        error,
        principal,
      }),
    );
  }

  override handleRequest<T = Principal>(err: unknown, user: T | false, info: unknown): T {
    if (err || !user) {
      throw invalidToken(err ?? info);
    }
    return user;
  }
}
