import { Global, Module } from '@nestjs/common';
import { NodeMetrics } from './node-metrics.service';

/** Global: the audit writer, the stream and the admin routes all count into the one instance. */
@Global()
@Module({ providers: [NodeMetrics], exports: [NodeMetrics] })
export class NodeMetricsModule {}
