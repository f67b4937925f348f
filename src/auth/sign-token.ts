import jwt from 'jsonwebtoken';
import type { AppConfig } from '../config/config';
import type { Scope } from './scopes';

export interface AccessTokenClaims {
  subject: string;
  channel: string;
  scopes: readonly Scope[];
  ttlS: number;
}

/**
 * An HS256 access token with the configured issuer, audience and channel claim: what
 * `npm run token` prints and the demo's development tokens. Never for a JWKS setup (the identity
 * provider mints those).
 */
export function signAccessToken(
  config: AppConfig,
  secret: string,
  claims: AccessTokenClaims,
): string {
  return jwt.sign(
    { [config.AUTH_CHANNEL_CLAIM]: claims.channel, scope: claims.scopes.join(' ') },
    secret,
    {
      algorithm: 'HS256',
      subject: claims.subject,
      expiresIn: claims.ttlS,
      ...(config.AUTH_ISSUER ? { issuer: config.AUTH_ISSUER } : {}),
      ...(config.AUTH_AUDIENCE ? { audience: config.AUTH_AUDIENCE } : {}),
    },
  );
}
