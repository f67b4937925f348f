import { testDir } from './dirs';
import { rmSync } from 'node:fs';
import { Pool } from 'pg';
import { startApp, type StartedApp } from '../../src/app.factory';
import { createTestDatabase, dropTestDatabase } from './test-db';
import { TEST_SECRET } from './tokens';

export interface TestApp {
  started: StartedApp;
  url: string;
  dataDir: string;
  databaseUrl: string;
  /** A pool on the app's database, for assertions. */
  db: Pool;
  close(): Promise<void>;
}

export interface TestAppOptions {
  env?: Record<string, string | undefined>;
  /** Use this database instead of a fresh clone of the template (it must be migrated or migratable). */
  databaseUrl?: string;
}

/** Starts the real service on an ephemeral port with its own database and DATA_DIR. */
export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const ownDatabase = !options.databaseUrl;
  const databaseUrl = options.databaseUrl ?? (await createTestDatabase());
  const dataDir = testDir('test-data');
  const started = await startApp({
    NODE_ENV: 'test',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    AUTH_JWT_SECRET: TEST_SECRET,
    NODE_ID: 'test-node',
    PATH: process.env.PATH,
    // Admission by measured recording capacity would make every test that streams depend on how
    // busy the machine was a second earlier; it is tested where it is the subject (overload,
    // capacity.spec), and bench:ingest measures it.
    RECORDING_CAPACITY_FPS: '1000000',
    ...options.env,
  });
  const db = new Pool({ connectionString: databaseUrl, max: 3 });
  // The tests that stop the database must not crash on idle-client errors.
  db.on('error', () => undefined);
  return {
    started,
    url: started.url,
    dataDir,
    databaseUrl,
    db,
    async close() {
      await started.close();
      await db.end();
      if (ownDatabase) {
        await dropTestDatabase(databaseUrl);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface JsonResponse<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
}

/** fetch with a JSON body and a bearer token; returns the parsed JSON body. */
export async function call<T = Record<string, any>>(
  base: string,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; headers?: Record<string, string>; raw?: string } = {},
): Promise<JsonResponse<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) {
    headers.authorization = `Bearer ${options.token}`;
  }
  let body: string | undefined = options.raw;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  } else if (options.raw !== undefined && !headers['content-type']) {
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(`${base}${path}`, { method, headers, body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : {}) as T };
}
