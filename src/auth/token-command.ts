import { resolve } from 'node:path';
import { loadConfig, readEnvironment, type AppConfig } from '../config/config';

/** What the token CLI signs with, besides the development secret found under DATA_DIR. */
const CLAIM_VARIABLES = ['AUTH_ISSUER', 'AUTH_AUDIENCE', 'AUTH_CHANNEL_CLAIM'] as const;

/**
 * The `npm run token` command line printed at start, for the service's own configuration. The
 * CLI reads the same loader (`.env` under the real environment), so the command only spells out
 * what the service got from its real environment: run as printed, in the service's directory, it
 * finds the same secret and signs the claims this service checks.
 */
export function tokenCommand(config: AppConfig, cwd: string = process.cwd()): string {
  let own: AppConfig | null;
  try {
    // What `npm run token` sees in a shell with none of the service's variables.
    own = loadConfig(readEnvironment({}, cwd));
  } catch {
    own = null;
  }
  const assignments: string[] = [];
  const dataDir = resolve(cwd, config.DATA_DIR);
  if (own === null || resolve(cwd, own.DATA_DIR) !== dataDir) {
    assignments.push(`DATA_DIR=${shellQuote(dataDir)}`);
  }
  for (const name of CLAIM_VARIABLES) {
    const value = config[name];
    if (value !== undefined && value !== own?.[name]) {
      assignments.push(`${name}=${shellQuote(value)}`);
    }
  }
  return [
    ...assignments,
    'npm run token -- --sub alice --channel branch-app --scope "stream:publish admin"',
  ].join(' ');
}

function shellQuote(value: string): string {
  return /^[\w./:@%+,=-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}
