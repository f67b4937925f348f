import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { envSchema, type Env } from './env.schema';

/** Thrown at boot when the environment is invalid; lists every bad variable at once. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** The injection token for the validated configuration. */
export const APP_CONFIG = Symbol('APP_CONFIG');

export type AppConfig = Env;

/**
 * Validates an environment (process.env or a test's object). Empty strings count as unset, so a
 * blank line in .env keeps the default.
 */
export function loadConfig(
  source: NodeJS.ProcessEnv | Record<string, string | undefined>,
): AppConfig {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(source)) {
    if (value !== undefined && value !== '') {
      cleaned[key] = value;
    }
  }
  const result = envSchema.safeParse(cleaned);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const name = issue.path.length > 0 ? issue.path.join('.') : '(environment)';
      const given = typeof issue.path[0] === 'string' ? cleaned[issue.path[0]] : undefined;
      const shown =
        given === undefined || /SECRET|PASSWORD|KEY_FILE/.test(name)
          ? ''
          : ` (got "${redactUrl(given)}")`;
      return `${name}: ${issue.message}${shown}`;
    });
    throw new ConfigError(problems);
  }
  return result.data;
}

/**
 * The environment the service and every CLI read: `.env` in the working directory (optional)
 * under the real environment, which wins, as `process.loadEnvFile` would have it. Nothing is
 * written to `process.env`, so the same call gives the service and `npm run token` the same view.
 */
export function readEnvironment(
  env: NodeJS.ProcessEnv | Record<string, string | undefined> = process.env,
  cwd: string = process.cwd(),
): Record<string, string | undefined> {
  let text: string;
  try {
    text = readFileSync(resolve(cwd, '.env'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return { ...env };
    }
    throw err;
  }
  return { ...parseEnv(text), ...env };
}

/** Hides a password inside a URL so config errors never print credentials. */
function redactUrl(value: string): string {
  return value.replace(/\/\/([^:@/]+):([^@/]+)@/, '//$1:***@');
}

/** Where the sessions' spools are: SPOOL_DIR, else DATA_DIR/spool (absolute). */
export function spoolDirOf(config: Pick<AppConfig, 'DATA_DIR' | 'SPOOL_DIR'>): string {
  return resolve(config.SPOOL_DIR ?? resolve(config.DATA_DIR, 'spool'));
}

/** Where finished recordings are: RECORDINGS_DIR, else DATA_DIR/recordings (absolute). */
export function recordingsDirOf(config: Pick<AppConfig, 'DATA_DIR' | 'RECORDINGS_DIR'>): string {
  return resolve(config.RECORDINGS_DIR ?? resolve(config.DATA_DIR, 'recordings'));
}
