import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { AuditWriter } from '../audit/audit-writer.service';
import { APP_CONFIG, type AppConfig } from '../config/config';

/** Audit records waiting for Postgres (in memory or journaled) stay under their limit. */
@Injectable()
export class AuditBacklogHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly audit: AuditWriter,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  check(key: string) {
    const indicator = this.health.check(key);
    const backlog = this.audit.backlog();
    const details = { backlog, max: this.config.HEALTH_AUDIT_BACKLOG_MAX };
    return backlog < this.config.HEALTH_AUDIT_BACKLOG_MAX
      ? indicator.up(details)
      : indicator.down({ ...details, message: 'audit records are not reaching Postgres' });
  }
}
