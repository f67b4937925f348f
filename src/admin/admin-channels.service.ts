import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import type { Repository } from 'typeorm';
import { AuditWriter } from '../audit/audit-writer.service';
import type { Principal } from '../auth/scopes';
import { ConnectionLeases } from '../cluster/connection-leases.service';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { ChannelQuotaEntity } from '../stream/channel-quota.entity';
import { type ChannelLimits, QuotaService } from '../stream/quota.service';
import type { ChannelQuotaView, ChannelView, QuotaOverride } from './admin-api.schema';
export type { ChannelQuotaView, ChannelView, QuotaOverride } from './admin-api.schema';

@Injectable()
export class AdminChannelsService {
  constructor(
    @InjectRepository(ChannelQuotaEntity)
    private readonly quotaRows: Repository<ChannelQuotaEntity>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly quotas: QuotaService,
    private readonly leases: ConnectionLeases,
    private readonly audit: AuditWriter,
  ) {}

  /** Every channel with live connections on any node or a stored override, by name. */
  async list(): Promise<{ defaults: ChannelLimits; channels: ChannelView[] }> {
    const [rows, live] = await Promise.all([this.quotaRows.find(), this.leases.channelCounts()]);
    const overrides = new Map(rows.map((r) => [r.channel, overrideOf(r)]));
    const names = [...new Set([...Object.keys(live), ...overrides.keys()])].sort();
    return {
      defaults: this.quotas.defaultLimits(),
      channels: names.map((channel) => ({
        channel,
        connections: live[channel] ?? 0,
        effective: this.quotas.limitsFor(channel),
        override: overrides.get(channel) ?? null,
      })),
    };
  }

  async get(channel: string): Promise<ChannelQuotaView> {
    const row = await this.quotaRows.findOneBy({ channel });
    return {
      channel,
      effective: this.quotas.limitsFor(channel),
      override: row ? overrideOf(row) : null,
      defaults: this.quotas.defaultLimits(),
    };
  }

  /**
   * Replaces a channel's override (a quota left out or null: the default; all of them: the
   * override is removed), audits it with the admin's subject, and reloads the overrides so that
   * the next handshake on this node is admitted against it. Other nodes pick it up within
   * QUOTA_REFRESH_MS.
   */
  async set(admin: Principal, channel: string, next: QuotaOverride): Promise<ChannelQuotaView> {
    // One change of a channel at a time (a lock on the channel's name: its row may not exist yet),
    // so the audited `before` is the override this change replaced.
    const before = await this.quotaRows.manager.transaction(async (em) => {
      await em.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`channel_quota:${channel}`]);
      const row = await em.findOneBy(ChannelQuotaEntity, { channel });
      if (Object.values(next).every((v) => v === null)) {
        await em.delete(ChannelQuotaEntity, { channel });
      } else {
        await em.upsert(ChannelQuotaEntity, { channel, ...next, updatedAt: new Date() }, [
          'channel',
        ]);
      }
      return row;
    });
    this.audit.record({
      kind: 'admin_action',
      id: randomUUID(),
      at: new Date(),
      node: this.config.NODE_ID,
      subject: admin.subject,
      action: 'quota_set',
      target: channel,
      detail: { before: before ? overrideOf(before) : null, after: next },
    });
    await this.quotas.reloadNow();
    return this.get(channel);
  }
}

function overrideOf(row: ChannelQuotaEntity): QuotaOverride & { updatedAt: string } {
  return {
    maxConnections: row.maxConnections,
    handshakesPerMin: row.handshakesPerMin,
    maxFps: row.maxFps,
    maxKbps: row.maxKbps,
    videoCodecs: row.videoCodecs,
    maxWidth: row.maxWidth,
    maxHeight: row.maxHeight,
    updatedAt: row.updatedAt.toISOString(),
  };
}
