import { Global, Module } from '@nestjs/common';
import { ClusterBus } from './cluster-bus.service';
import { ConnectionLeases } from './connection-leases.service';
import { Membership } from './membership.service';
import { PgThrottlerStorage } from './pg-throttler-storage';

/**
 * Node membership, requests between nodes, connection leases and shared rate counters, all
 * through Postgres (issue 15).
 */
@Global()
@Module({
  providers: [Membership, ClusterBus, ConnectionLeases, PgThrottlerStorage],
  exports: [Membership, ClusterBus, ConnectionLeases, PgThrottlerStorage],
})
export class ClusterModule {}
