import type { AppConfig } from './config';

/** Values resolved at boot, before Nest starts: validated config, database, signing secret. */
export interface Runtime {
  config: AppConfig;
  databaseUrl: string;
  /** The HS256 secret in force: AUTH_JWT_SECRET, or the development secret under DATA_DIR. */
  jwtSecret: string | undefined;
  /** True when jwtSecret was generated for development. */
  devSecret: boolean;
}

export const RUNTIME = Symbol('RUNTIME');
