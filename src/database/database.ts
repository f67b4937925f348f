import { join } from 'node:path';
import type { AppConfig } from '../config/config';
import { startEmbeddedPostgres } from './embedded-postgres';
import type { PostgresEvent } from './postgres-supervisor';

export interface ResolvedDatabase {
  url: string;
  embedded: boolean;
  stop(): Promise<void>;
}

export interface ResolveDatabaseHooks {
  onLog?: (line: string) => void;
  /** Outages and restarts of the embedded postmaster (none with DATABASE_URL). */
  onEvent?: (event: PostgresEvent) => void;
}

/** DATABASE_URL when given; otherwise a real Postgres embedded under DATA_DIR/postgres. */
export async function resolveDatabase(
  config: AppConfig,
  hooks: ResolveDatabaseHooks = {},
): Promise<ResolvedDatabase> {
  if (config.DATABASE_URL) {
    return { url: config.DATABASE_URL, embedded: false, stop: () => Promise.resolve() };
  }
  const handle = await startEmbeddedPostgres({
    clusterDir: join(config.DATA_DIR, 'postgres'),
    port: config.EMBEDDED_PG_PORT,
    onLog: hooks.onLog,
    onEvent: hooks.onEvent,
  });
  return { url: handle.url, embedded: true, stop: () => handle.stop() };
}
