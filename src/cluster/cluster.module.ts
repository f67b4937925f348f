import { Global, Module } from '@nestjs/common';
import { ClusterBus } from './cluster-bus.service';
import { Membership } from './membership.service';

/** Node membership and requests between nodes, both through Postgres (issue 15). */
@Global()
@Module({
  providers: [Membership, ClusterBus],
  exports: [Membership, ClusterBus],
})
export class ClusterModule {}
