import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger as PinoNestLogger } from 'nestjs-pino';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { AppModule } from './app.module';
import { AuditWriter } from './audit/audit-writer.service';
import type { NodeEventRecord, NodeEventType } from './audit/audit.types';
import { ensureDevSecret } from './auth/dev-secret';
import { tokenCommand } from './auth/token-command';
import { createLogger } from './common/logger';
import { loadConfig, type AppConfig } from './config/config';
import type { Runtime } from './config/runtime';
import { DataDirLock } from './database/data-dir-lock';
import { resolveDatabase } from './database/database';
import { serveConsole } from './console/console-files';
import { serveDemo } from './demo/demo-files';
import { runMigrations } from './database/migrate';
import type { PostgresEvent } from './database/postgres-supervisor';
import { cors } from './http/cors';
import { RequestGate } from './http/request-gate';
import { securityHeaders } from './http/security-headers';
import { workerGate } from './http/worker-gate';
import { MetricsController } from './metrics/metrics.controller';
import { serveOpenApi } from './docs/openapi';
import { DrainService } from './stream/drain.service';
import { StreamWsAdapter } from './stream/stream.adapter';

export interface StartedApp {
  app: INestApplication;
  config: AppConfig;
  /** Base URL the service listens on, e.g. http://127.0.0.1:8080. */
  url: string;
  /** Where /metrics is served: `${url}/metrics`, or on METRICS_PORT when that is set. */
  metricsUrl: string;
  logger: Logger;
  close(): Promise<void>;
}

/**
 * Boots framegate from an environment: validate config, lock DATA_DIR, get a database (embedded
 * or DATABASE_URL), migrate under an advisory lock, then start Nest over HTTP or HTTPS.
 */
export async function startApp(env: Record<string, string | undefined>): Promise<StartedApp> {
  const config = loadConfig(env);
  const logger = createLogger(config);
  const lock = DataDirLock.acquire(config.DATA_DIR);
  const cleanups: Array<() => Promise<void>> = [() => Promise.resolve(lock.release())];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.splice(0).reverse()) {
      await fn();
    }
  };
  try {
    const pgLog = logger.child({ component: 'embedded-postgres' });
    const outages = new OutageRecorder(config.NODE_ID, pgLog);
    const database = await resolveDatabase(config, {
      onLog: (line) => pgLog.debug(line),
      onEvent: (event) => outages.on(event),
    });
    // Registered first, so it runs last: the drain and the final flushes still need the database.
    cleanups.push(async () => {
      await database.stop();
      if (database.embedded) {
        logger.info('embedded Postgres stopped');
      }
    });
    if (database.embedded) {
      logger.info({ dataDir: config.DATA_DIR }, 'embedded Postgres started');
    }
    if (config.DB_MIGRATE) {
      const applied = await runMigrations({
        url: database.url,
        poolMax: 2,
        nodeId: config.NODE_ID,
      });
      if (applied.length > 0) {
        logger.info({ applied }, 'migrations applied');
      }
    }
    const runtime = resolveRuntime(config, database.url, logger);
    const app = await NestFactory.create<NestExpressApplication>(
      AppModule.forRoot(runtime, logger),
      {
        bufferLogs: true,
        bodyParser: false,
        httpsOptions: config.TLS_CERT_FILE
          ? {
              cert: readFileSync(config.TLS_CERT_FILE),
              key: readFileSync(config.TLS_KEY_FILE as string),
            }
          : undefined,
      },
    );
    cleanups.push(async () => {
      // Connections and sessions first, while the database and audit writer are still there.
      await app.get(DrainService).drain();
      await app.close();
    });
    const audit = app.get(AuditWriter);
    outages.attach((record) => audit.record(record));
    app.useLogger(app.get(PinoNestLogger));
    app.set('trust proxy', config.TRUST_PROXY);
    app.disable('x-powered-by');
    // No body parser: each route reads its own body after the guard (see src/http/), so nothing
    // is read from a caller before it is authenticated. Headers first, then the rate limits.
    app.use(securityHeaders(Boolean(config.TLS_CERT_FILE)));
    // Before the rate limits: their 429s carry the grant too, and preflights are not counted.
    app.use(cors(config.ALLOWED_ORIGINS));
    app.use(new RequestGate(config, audit).handle);
    if (config.NODE_ROLE === 'worker') {
      app.use(workerGate);
    }
    serveDemo(app, logger);
    serveConsole(app, logger);
    applyServerTimeouts(app.getHttpServer(), config);
    app.useWebSocketAdapter(new StreamWsAdapter(app, config));
    serveOpenApi(app);
    await app.listen(config.PORT, config.HOST);
    const address = app.getHttpServer().address() as AddressInfo;
    const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
    const url = `${config.TLS_CERT_FILE ? 'https' : 'http'}://${host}:${address.port}`;
    let metricsUrl = `${url}/metrics`;
    if (config.METRICS_PORT !== undefined) {
      const metricsServer = await serveMetrics(app.get(MetricsController), config);
      cleanups.push(() => new Promise<void>((resolve) => metricsServer.close(() => resolve())));
      const port = (metricsServer.address() as AddressInfo).port;
      metricsUrl = `http://${host}:${port}/metrics`;
    }
    logger.info({ url, metricsUrl }, 'framegate listening');
    return { app, config, url, metricsUrl, logger, close: cleanup };
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw err;
  }
}

/**
 * Logs each outage of the embedded postmaster and its recovery, and audits both as node events
 * (the audit writer journals them while the database is down). Events from before Nest is up wait
 * for the writer.
 */
class OutageRecorder {
  private sink: ((record: NodeEventRecord) => void) | null = null;
  private readonly pending: NodeEventRecord[] = [];

  constructor(
    private readonly node: string,
    private readonly log: Logger,
  ) {}

  attach(sink: (record: NodeEventRecord) => void): void {
    this.sink = sink;
    this.pending.splice(0).forEach(sink);
  }

  on(event: PostgresEvent): void {
    switch (event.type) {
      case 'exited':
        this.log.warn(
          { pid: event.pid, code: event.code, signal: event.signal },
          'embedded Postgres exited unexpectedly; restarting it',
        );
        this.record('database_down', event.at, {
          pid: event.pid,
          code: event.code,
          signal: event.signal,
        });
        return;
      case 'restart_failed':
        this.log.warn(
          { attempt: event.attempt, retryInMs: event.retryInMs, err: event.error },
          'embedded Postgres did not restart; retrying',
        );
        return;
      case 'restarted':
        this.log.info(
          { pid: event.pid, attempts: event.attempts, downMs: event.downMs },
          'embedded Postgres restarted',
        );
        this.record('database_up', event.at, {
          pid: event.pid,
          attempts: event.attempts,
          downMs: event.downMs,
        });
        return;
    }
  }

  private record(type: NodeEventType, at: Date, detail: Record<string, unknown>): void {
    const record: NodeEventRecord = {
      kind: 'node_event',
      id: randomUUID(),
      at,
      node: this.node,
      type,
      detail,
    };
    if (this.sink) {
      this.sink(record);
    } else {
      this.pending.push(record);
    }
  }
}

/**
 * /metrics on a port of its own (plain HTTP on HOST), so it can stay off the public port: a
 * scraper reaches it on the internal network while the service port faces clients.
 */
async function serveMetrics(metrics: MetricsController, config: AppConfig): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not_found', message: 'only GET /metrics is served here' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
    res.end(req.method === 'HEAD' ? undefined : metrics.metrics());
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.METRICS_PORT, config.HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** How often Node checks its connections against the header and request timeouts. */
const CONNECTIONS_CHECK_MS = 1_000;

/**
 * The whole-request timeouts of the HTTP server (408 and close beyond them); a body's silence is
 * timed per route by the body reader. Node checks them every 30 s by default, which would let a
 * slow client hold its connection 30 s past them; the interval is read when the server starts
 * listening, so this runs before `listen`.
 */
function applyServerTimeouts(server: Server, config: AppConfig): void {
  server.headersTimeout = config.HTTP_HEADERS_TIMEOUT_MS;
  server.requestTimeout = config.HTTP_REQUEST_TIMEOUT_MS;
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval =
    CONNECTIONS_CHECK_MS;
}

function resolveRuntime(config: AppConfig, databaseUrl: string, logger: Logger): Runtime {
  if (config.AUTH_JWT_SECRET || config.AUTH_JWKS_URL) {
    return { config, databaseUrl, jwtSecret: config.AUTH_JWT_SECRET, devSecret: false };
  }
  const { secret, file } = ensureDevSecret(config.DATA_DIR);
  logger.warn(
    { secretFile: file },
    'no AUTH_JWKS_URL or AUTH_JWT_SECRET: using a development signing secret. ' +
      `Mint a token with: ${tokenCommand(config)}`,
  );
  return { config, databaseUrl, jwtSecret: secret, devSecret: true };
}
