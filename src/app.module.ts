import { ClusterModule } from './cluster/cluster.module';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { LoggerModule } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AdminModule } from './admin/admin.module';
import { AuditModule } from './audit/audit.module';
import { AuthModule } from './auth/auth.module';
import { stripQuery } from './common/logger';
import { HttpExceptionFilter } from './common/http-exception.filter';
import { ConfigModule } from './config/config.module';
import { PoolErrorGuard } from './database/pool-errors';
import { QueueModule } from './queue/queue.module';
import { DocsModule } from './docs/docs.module';
import type { Runtime } from './config/runtime';
import { dataSourceOptions } from './database/data-source-options';
import { DemoModule } from './demo/demo.module';
import { HealthModule } from './health/health.module';
import { JobsModule } from './jobs/jobs.module';
import { SessionsModule } from './sessions/sessions.module';
import { MetricsModule } from './metrics/metrics.module';
import { NodeMetricsModule } from './metrics/node-metrics.module';
import { StreamModule } from './stream/stream.module';
import { WebhooksModule } from './webhooks/webhooks.module';

/** A caller's own X-Request-Id when it is a plain token, else a UUID; echoed on the answer. */
function requestId(req: IncomingMessage, res: ServerResponse): string {
  const incoming = req.headers['x-request-id'];
  const id =
    typeof incoming === 'string' && /^[\w.:-]{1,64}$/.test(incoming) ? incoming : randomUUID();
  res.setHeader('X-Request-Id', id);
  return id;
}

@Module({})
export class AppModule {
  static forRoot(runtime: Runtime, logger: Logger): DynamicModule {
    const { config } = runtime;
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(runtime),
        LoggerModule.forRoot({
          pinoHttp: {
            logger,
            // Health probes would drown everything else.
            autoLogging: { ignore: (req) => req.url?.startsWith('/health') ?? false },
            genReqId: requestId,
            serializers: {
              req: (req: { id: unknown; method: string; url?: string }) => ({
                id: req.id,
                method: req.method,
                url: stripQuery(req.url),
              }),
            },
          },
        }),
        TypeOrmModule.forRoot(
          dataSourceOptions({
            url: runtime.databaseUrl,
            poolMax: config.DB_POOL_MAX,
            nodeId: config.NODE_ID,
          }),
        ),
        ClusterModule,
        NodeMetricsModule,
        QueueModule,
        AuditModule,
        AuthModule,
        SessionsModule,
        StreamModule,
        AdminModule,
        JobsModule,
        WebhooksModule,
        MetricsModule,
        HealthModule,
        DocsModule,
        DemoModule,
      ],
      providers: [{ provide: APP_FILTER, useClass: HttpExceptionFilter }, PoolErrorGuard],
    };
  }
}
