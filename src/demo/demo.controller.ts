import { Controller, HttpCode, Inject, Post } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { Public } from '../auth/auth.decorators';
import type { Scope } from '../auth/scopes';
import { signAccessToken } from '../auth/sign-token';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { RUNTIME, type Runtime } from '../config/runtime';
import { ApiDoc } from '../docs/api-doc';

/**
 * What a development token may do: stream, and play back its own recordings. Each token names a
 * subject of its own (`demo-` and a random suffix), so that whoever else reaches a development
 * service and mints one cannot read the recordings made with another.
 */
const DEV_SUBJECT_PREFIX = 'demo-';
const DEV_CHANNEL = 'demo';
const DEV_SCOPES: readonly Scope[] = ['stream:publish', 'recording:read'];
const DEV_TTL_S = 3600;

/** A development access token and what it names. */
const devTokenSchema = z.strictObject({
  token: z.string(),
  expiresAt: z.string(),
  subject: z.string(),
  channel: z.string(),
  scopes: z.array(z.string()),
});

export type DevToken = z.output<typeof devTokenSchema>;

@Controller('demo')
export class DemoController {
  constructor(@Inject(RUNTIME) private readonly runtime: Runtime) {}

  /**
   * Development only: a token for the demo page, signed with the generated development secret.
   * The service has that secret only when neither AUTH_JWT_SECRET nor AUTH_JWKS_URL is set, which
   * production refuses to boot with; with real auth configured this route is a 404, as if absent.
   */
  @Post('token')
  @Public()
  @HttpCode(201)
  @ApiDoc({
    summary:
      'Development only: a one-hour token for the /demo page (404 with real auth configured)',
    responses: { 201: devTokenSchema },
    errors: [404, 429],
  })
  token(): DevToken {
    const { devSecret, jwtSecret, config } = this.runtime;
    if (!devSecret || !jwtSecret) {
      throw new AppError(
        ErrorCode.NotFound,
        'development tokens exist only without AUTH_JWT_SECRET or AUTH_JWKS_URL (development mode)',
      );
    }
    const subject = `${DEV_SUBJECT_PREFIX}${randomBytes(6).toString('base64url')}`;
    const token = signAccessToken(config, jwtSecret, {
      subject,
      channel: DEV_CHANNEL,
      scopes: DEV_SCOPES,
      ttlS: DEV_TTL_S,
    });
    return {
      token,
      expiresAt: new Date(Date.now() + DEV_TTL_S * 1000).toISOString(),
      subject,
      channel: DEV_CHANNEL,
      scopes: [...DEV_SCOPES],
    };
  }
}
