import { Body, Controller, Get, Param, Put, Query } from '@nestjs/common';
import { z } from 'zod';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { parseOrThrow, ZodBodyPipe } from '../common/zod-body.pipe';
import { JsonBody } from '../http/json-body.interceptor';
import {
  AdminChannelsService,
  type ChannelQuotaView,
  type ChannelView,
  type QuotaOverride,
} from './admin-channels.service';
import type { ChannelLimits } from '../stream/quota.service';
import { noQuery } from './admin-query';
import { VIDEO_CODEC_FAMILIES, type VideoCodecFamily } from '../protocol/codecs';
import { ApiDoc } from '../docs/api-doc';
import { channelListSchema, channelQuotaViewSchema } from './admin-api.schema';

/** A channel name as tokens carry it: printable, no control characters. */
const channelName = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters');

/**
 * The bounds match what the quota code can honour: handshake rates are clamped at 100 000 a
 * minute by the in-memory counter, and fps/kbps of 0 would refuse every frame (use
 * maxConnections 0 to switch a channel off). The database checks say the same.
 */
const quotaBody = z.strictObject({
  maxConnections: z.number().int().min(0).max(1_000_000).nullable().default(null),
  handshakesPerMin: z.number().int().min(0).max(100_000).nullable().default(null),
  maxFps: z.number().int().min(1).max(1_000).nullable().default(null),
  maxKbps: z.number().int().min(1).max(10_000_000).nullable().default(null),
  /** Video codec families accepted in `open`; at least one, no repeats. */
  videoCodecs: z
    .array(z.enum(VIDEO_CODEC_FAMILIES as [VideoCodecFamily, ...VideoCodecFamily[]]))
    .min(1)
    .refine((c) => new Set(c).size === c.length, 'must not repeat a codec')
    .nullable()
    .default(null),
  maxWidth: z.number().int().min(16).max(8192).nullable().default(null),
  maxHeight: z.number().int().min(16).max(8192).nullable().default(null),
});

@Controller('v1/admin/channels')
@RequireScopes('admin')
export class AdminChannelsController {
  constructor(private readonly channels: AdminChannelsService) {}

  /** Channels with live connections on this node or a quota override, with effective quotas. */
  @Get()
  @ApiDoc({
    summary: 'Channels with live connections on this node or a quota override, with their quotas',
    responses: { 200: channelListSchema },
    errors: [400],
  })
  list(
    @Query() query: Record<string, unknown>,
  ): Promise<{ defaults: ChannelLimits; channels: ChannelView[] }> {
    parseOrThrow(noQuery, query, 'query');
    return this.channels.list();
  }

  @Get(':channel/quota')
  @ApiDoc({
    summary: "A channel's quotas: effective, override and defaults",
    responses: { 200: channelQuotaViewSchema },
    errors: [400],
  })
  quota(@Param('channel') channel: string): Promise<ChannelQuotaView> {
    return this.channels.get(parseOrThrow(channelName, channel, 'channel'));
  }

  /** Replaces the channel's override; applies to the next handshake, audited with the admin. */
  @Put(':channel/quota')
  @ApiDoc({
    summary: "Replace a channel's quota override (null or absent: the default); next handshake on",
    body: quotaBody,
    responses: { 200: channelQuotaViewSchema },
    errors: [400, 413, 415],
  })
  @JsonBody()
  setQuota(
    @CurrentPrincipal() admin: Principal,
    @Param('channel') channel: string,
    @Body(new ZodBodyPipe(quotaBody)) body: QuotaOverride,
  ): Promise<ChannelQuotaView> {
    return this.channels.set(admin, parseOrThrow(channelName, channel, 'channel'), body);
  }
}
