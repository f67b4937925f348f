import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, readEnvironment } from '../config/config';
import { ensureDevSecret } from './dev-secret';
import { isScope } from './scopes';
import { signAccessToken } from './sign-token';

const USAGE =
  'usage: npm run token -- --sub alice --channel branch-app [--scope "stream:publish admin"] [--ttl 3600]';

/**
 * Prints an HS256 access token signed with AUTH_JWT_SECRET or the development secret under
 * DATA_DIR, with the configured issuer, audience and channel claim. It reads the configuration as
 * the service does (`.env` under the real environment), so both find the same secret. Tokens
 * from a JWKS issuer come from the identity provider, not from here.
 */
function main(): void {
  const { values } = parseArgs({
    options: {
      sub: { type: 'string' },
      channel: { type: 'string' },
      scope: { type: 'string', default: 'stream:publish' },
      ttl: { type: 'string', default: '3600' },
    },
  });
  const ttl = Number(values.ttl);
  if (!values.sub || !values.channel || !Number.isInteger(ttl) || ttl <= 0) {
    throw new Error(USAGE);
  }
  const scopes = (values.scope ?? '').split(/\s+/).filter(Boolean);
  const unknown = scopes.filter((s) => !isScope(s));
  if (unknown.length > 0) {
    throw new Error(`unknown scope(s): ${unknown.join(', ')}`);
  }
  const config = loadConfig(readEnvironment());
  if (!config.AUTH_JWT_SECRET && config.AUTH_JWKS_URL) {
    throw new Error('AUTH_JWKS_URL is set: get tokens from your identity provider');
  }
  const secret = config.AUTH_JWT_SECRET ?? ensureDevSecret(config.DATA_DIR).secret;
  const token = signAccessToken(config, secret, {
    subject: values.sub,
    channel: values.channel,
    scopes: scopes.filter(isScope),
    ttlS: ttl,
  });
  process.stdout.write(`${token}\n`);
}

try {
  main();
} catch (err) {
  process.stderr.write(
    `${err instanceof ConfigError || err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(1);
}
