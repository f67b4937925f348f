import jwt, { type Algorithm } from 'jsonwebtoken';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';

/** The HS256 secret every test app is started with unless a test configures otherwise. */
export const TEST_SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789';

export interface TokenOptions {
  sub?: string;
  channel?: string;
  scope?: string;
  /** Seconds from now; negative for an expired token. */
  expiresIn?: number;
  notBefore?: number;
  issuer?: string;
  audience?: string;
  secret?: string;
  extra?: Record<string, unknown>;
}

/** The claims of a test access token. */
function claims(o: TokenOptions): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    sub: o.sub ?? 'alice',
    channel: o.channel ?? 'branch-app',
    scope: o.scope ?? 'stream:publish',
    exp: now + (o.expiresIn ?? 3600),
    ...(o.notBefore !== undefined ? { nbf: now + o.notBefore } : {}),
    ...(o.issuer ? { iss: o.issuer } : {}),
    ...(o.audience ? { aud: o.audience } : {}),
    ...o.extra,
  };
}

/** An HS256 access token as an identity provider would mint it for development. */
export function hsToken(o: TokenOptions = {}): string {
  return jwt.sign(claims(o), o.secret ?? TEST_SECRET, { algorithm: 'HS256' });
}

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  alg: Algorithm;
}

export function rsaKey(kid: string): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, privateKey, publicKey, alg: 'RS256' };
}

export function ecKey(kid: string): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, privateKey, publicKey, alg: 'ES256' };
}

/** An access token signed by a JWKS key. */
export function keyToken(key: SigningKey, o: TokenOptions = {}): string {
  return jwt.sign(claims(o), key.privateKey, { algorithm: key.alg, keyid: key.kid });
}

export function jwkOf(key: SigningKey): Record<string, unknown> {
  return { ...key.publicKey.export({ format: 'jwk' }), kid: key.kid, alg: key.alg, use: 'sig' };
}

/** An unsigned token (`alg: none`). */
export function noneToken(o: TokenOptions = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const enc = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc({
    sub: o.sub ?? 'alice',
    channel: o.channel ?? 'branch-app',
    scope: o.scope ?? 'stream:publish admin',
    exp: now + 3600,
  })}.`;
}
