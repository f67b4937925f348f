import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { ClusterBus } from '../cluster/cluster-bus.service';
import { Membership } from '../cluster/membership.service';

/**
 * This node's heartbeat in `nodes` is fresh. A node that cannot renew it is counted dead by the
 * others, which may take its sessions over: a load balancer must stop sending it traffic.
 */
@Injectable()
export class MembershipHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly membership: Membership,
    private readonly bus: ClusterBus,
  ) {}

  check(key: string) {
    const indicator = this.health.check(key);
    const age = this.membership.heartbeatAgeMs();
    const details = {
      node: this.membership.nodeId,
      heartbeatAgeMs: Number.isFinite(age) ? Math.round(age) : null,
      busListening: this.bus.isListening,
    };
    return this.membership.healthy
      ? indicator.up(details)
      : indicator.down({ ...details, message: 'this node cannot renew its heartbeat' });
  }
}
