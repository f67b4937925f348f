import { Inject, Injectable } from '@nestjs/common';
import jwt, {
  type JwtHeader,
  type JwtPayload,
  type VerifyOptions,
  type Algorithm,
} from 'jsonwebtoken';
import { JwksClient } from 'jwks-rsa';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { RUNTIME, type Runtime } from '../config/runtime';
import { isScope, type Principal, type Scope } from './scopes';

const ASYMMETRIC: Algorithm[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
];
const SYMMETRIC: Algorithm[] = ['HS256'];

/**
 * Verifies OAuth 2.0 JWT access tokens, for the passport strategy (HTTP) and the WebSocket
 * handshake alike. The key is chosen by the token's `alg` *and* what is configured: HS256 only
 * against the shared secret, asymmetric algorithms only against the JWKS, so a token signed with
 * HS256 using the public key (algorithm confusion) or `alg: none` never verifies.
 */
@Injectable()
export class TokenVerifier {
  readonly algorithms: Algorithm[];
  readonly verifyOptions: VerifyOptions;
  private readonly jwks: JwksClient | undefined;
  private readonly secret: string | undefined;
  private readonly channelClaim: string;

  constructor(@Inject(RUNTIME) runtime: Runtime) {
    const { config } = runtime;
    this.secret = runtime.jwtSecret;
    this.channelClaim = config.AUTH_CHANNEL_CLAIM;
    this.jwks = config.AUTH_JWKS_URL
      ? new JwksClient({
          jwksUri: config.AUTH_JWKS_URL,
          cache: true,
          cacheMaxAge: config.AUTH_JWKS_CACHE_MAX_AGE_MS,
          cacheMaxEntries: 20,
          // An unknown `kid` triggers a fetch; the rate limit stops a flood of forged kids from
          // hammering the identity provider.
          rateLimit: true,
          jwksRequestsPerMinute: config.AUTH_JWKS_REQUESTS_PER_MIN,
          timeout: 5_000,
        })
      : undefined;
    this.algorithms = [...(this.secret ? SYMMETRIC : []), ...(this.jwks ? ASYMMETRIC : [])];
    this.verifyOptions = {
      algorithms: this.algorithms,
      issuer: config.AUTH_ISSUER,
      audience: config.AUTH_AUDIENCE,
      clockTolerance: config.AUTH_CLOCK_TOLERANCE_S,
    };
  }

  /** Verifies a raw token and returns its principal; every failure is `invalid_token`. */
  verify(token: string): Promise<Principal> {
    return new Promise((resolve, reject) => {
      // jsonwebtoken wraps a key-callback error as "error in secret or public key callback: …";
      // the key rules' own error is what the HTTP side answers, so it is answered here too.
      let keyError: unknown = null;
      jwt.verify(
        token,
        (header, done) => {
          this.keyFor(header).then(
            (key) => done(null, key),
            (err: unknown) => {
              keyError = err;
              done(err as Error);
            },
          );
        },
        this.verifyOptions,
        (err, payload) => {
          if (err) {
            reject(invalidToken(keyError ?? err));
            return;
          }
          try {
            resolve(this.principalFromClaims(payload as JwtPayload));
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        },
      );
    });
  }

  /** The verification key for a token header, per the rules in the class comment. */
  async keyFor(header: JwtHeader): Promise<string> {
    const alg = header.alg as string | undefined;
    if (alg !== undefined && (SYMMETRIC as string[]).includes(alg)) {
      if (!this.secret) {
        throw new AppError(ErrorCode.InvalidToken, `algorithm ${alg} is not accepted`);
      }
      return this.secret;
    }
    if (alg !== undefined && (ASYMMETRIC as string[]).includes(alg)) {
      if (!this.jwks) {
        throw new AppError(ErrorCode.InvalidToken, `algorithm ${alg} is not accepted`);
      }
      if (!header.kid) {
        throw new AppError(ErrorCode.InvalidToken, 'token header has no kid');
      }
      try {
        const key = await this.jwks.getSigningKey(header.kid);
        return key.getPublicKey();
      } catch (err) {
        throw new AppError(
          ErrorCode.InvalidToken,
          `signing key ${header.kid} is unknown: ${(err as Error).message}`,
        );
      }
    }
    throw new AppError(ErrorCode.InvalidToken, `algorithm ${String(alg)} is not accepted`);
  }

  /** Maps verified claims to a principal; `exp`, `sub` and a channel are required. */
  principalFromClaims(claims: JwtPayload): Principal {
    if (typeof claims.exp !== 'number') {
      throw new AppError(ErrorCode.InvalidToken, 'token has no exp claim');
    }
    if (typeof claims.sub !== 'string' || claims.sub === '') {
      throw new AppError(ErrorCode.InvalidToken, 'token has no sub claim');
    }
    const channel = [claims[this.channelClaim], claims.azp, claims.client_id].find(
      (c): c is string => typeof c === 'string' && c !== '',
    );
    if (!channel) {
      throw new AppError(
        ErrorCode.InvalidToken,
        `token has no ${this.channelClaim}, azp or client_id claim`,
      );
    }
    return {
      subject: claims.sub,
      channel,
      scopes: scopesOf(claims),
      expiresAt: new Date(claims.exp * 1000),
    };
  }
}

function scopesOf(claims: JwtPayload): Scope[] {
  const raw: unknown = claims.scope ?? claims.scp;
  const list = typeof raw === 'string' ? raw.split(' ') : Array.isArray(raw) ? raw : [];
  return [...new Set(list.filter((s): s is Scope => typeof s === 'string' && isScope(s)))];
}

/** Turns a jsonwebtoken/jwks error into an `invalid_token` AppError with a useful message. */
export function invalidToken(err: unknown): AppError {
  if (err instanceof AppError) {
    return err;
  }
  if (err instanceof jwt.TokenExpiredError) {
    return new AppError(ErrorCode.InvalidToken, 'token expired');
  }
  if (err instanceof jwt.NotBeforeError) {
    return new AppError(ErrorCode.InvalidToken, 'token not yet valid');
  }
  const message = err instanceof Error ? err.message : 'token is invalid';
  if (message === 'No auth token') {
    return new AppError(ErrorCode.InvalidToken, 'missing bearer token');
  }
  // jsonwebtoken's messages ("invalid signature", "jwt issuer invalid. expected: x") are safe.
  return new AppError(ErrorCode.InvalidToken, message.replace(/^jwt /, 'token '));
}
