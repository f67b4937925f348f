import { ConnectionLeases } from '../cluster/connection-leases.service';
import { Controller, Get, Header, Inject } from '@nestjs/common';
import { AuditWriter } from '../audit/audit-writer.service';
import { Public } from '../auth/auth.decorators';
import { ApiDoc } from '../docs/api-doc';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { RecordingService } from '../media/recording.service';
import { RecordingUploadService } from '../media/recording-upload.service';
import { CapacityService } from '../stream/capacity.service';
import { QuotaService } from '../stream/quota.service';
import { SessionRegistry } from '../stream/session-registry.service';
import { StreamConnections } from '../stream/stream-connections.service';
import { NodeMetrics } from './node-metrics.service';
import { single } from './prometheus';

/**
 * Prometheus text exposition of the node's state and counters. Public like the health probes:
 * it carries counts only, no subject, channel or session id.
 */
@Controller('metrics')
@Public()
export class MetricsController {
  constructor(
    private readonly registry: SessionRegistry,
    private readonly connections: StreamConnections,
    private readonly recordings: RecordingService,
    private readonly quotas: QuotaService,
    private readonly audit: AuditWriter,
    private readonly capacity: CapacityService,
    private readonly events: NodeMetrics,
    private readonly uploads: RecordingUploadService,
    private readonly leases: ConnectionLeases,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** On the public port unless METRICS_PORT moves it to a port of its own. */
  @Get()
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  @ApiDoc({
    summary: 'Prometheus metrics (counts only; 404 here when METRICS_PORT is set)',
    responses: {
      200: {
        description: 'Prometheus text format 0.0.4',
        contentType: 'text/plain',
        schema: { type: 'string' },
      },
    },
    errors: [404],
  })
  publicMetrics(): string {
    if (this.config.METRICS_PORT !== undefined) {
      throw new AppError(ErrorCode.NotFound, 'metrics are served on METRICS_PORT');
    }
    return this.metrics();
  }

  /** The exposition text: gauges of the node's state, then the event counters. */
  metrics(): string {
    const { encoders, recorders } = this.recordings.status();
    const totals = this.registry.totals;
    const refusals = this.audit.refusalStats();
    const capacity = this.capacity.stats();
    const uploads = this.uploads.stats();
    const lines: Array<[string, 'gauge' | 'counter', string, number]> = [
      ['framegate_connections', 'gauge', 'Live WebSocket connections', this.connections.size],
      [
        'framegate_connection_slots',
        'gauge',
        'Connection slots held (quota)',
        this.quotas.stats().node,
      ],
      [
        'framegate_sessions_live',
        'gauge',
        'Sessions with a runtime on this node',
        this.registry.size,
      ],
      ['framegate_frames_received_total', 'counter', 'Media messages stored', totals.frames],
      ['framegate_bytes_received_total', 'counter', 'Media bytes stored', totals.bytes],
      ['framegate_acks_sent_total', 'counter', 'Merged acks sent over WebSocket', totals.acks],
      ['framegate_encoders_active', 'gauge', 'Encoder slots in use', encoders.active],
      [
        'framegate_encoders_waiting',
        'gauge',
        'Recordings waiting for an encoder slot',
        encoders.waiting,
      ],
      ['framegate_encoders_max', 'gauge', 'RECORDING_MAX_ENCODERS', encoders.max],
      [
        'framegate_recorder_backlog_frames',
        'gauge',
        'Frames stored but not yet encoded, all sessions',
        recorders.reduce((sum, r) => sum + r.backlogFrames, 0),
      ],
      [
        'framegate_recording_capacity_fps',
        'gauge',
        'Frames per second the encoders sustain (measured; frames of RECORDING_WIDTH x HEIGHT)',
        capacity.capacityFps,
      ],
      [
        'framegate_recording_budget_fps',
        'gauge',
        'Capacity less RECORDING_CAPACITY_HEADROOM: what sessions are admitted against',
        capacity.budgetFps,
      ],
      [
        'framegate_recording_demand_fps',
        'gauge',
        'Frames per second the live sessions declared',
        capacity.demandFps,
      ],
      [
        'framegate_recording_allowed_fps',
        'gauge',
        'Frames per second the live sessions may send under their capacity caps',
        capacity.allowedFps,
      ],
      [
        'framegate_recording_encoded_fps',
        'gauge',
        'Frames encoded per second over the last second',
        capacity.encodedFps ?? 0,
      ],
      [
        'framegate_sessions_throttled',
        'gauge',
        'Sessions capped below their declared frame rate for capacity',
        capacity.throttledSessions,
      ],
      [
        'framegate_sessions_refused_capacity_total',
        'counter',
        'Sessions refused for recording capacity (503 / 1013)',
        capacity.refusedTotal,
      ],
      [
        'framegate_connection_leases',
        'gauge',
        'Connection leases this node holds in Postgres (one per live WebSocket, counted cluster-wide)',
        this.leases.size,
      ],
      [
        'framegate_audit_backlog',
        'gauge',
        'Audit records not yet in Postgres',
        this.audit.backlog(),
      ],
      [
        'framegate_audit_refusals_total',
        'counter',
        'Refused connections audited (each is counted in some row)',
        refusals.refusals,
      ],
      [
        'framegate_audit_refusal_rows_total',
        'counter',
        'Audit rows started for refusals (refusals / rows is the aggregation factor)',
        refusals.rows,
      ],
      [
        'framegate_recordings_s3_enabled',
        'gauge',
        '1 when recordings are uploaded to RECORDINGS_S3_URL',
        uploads.enabled ? 1 : 0,
      ],
      [
        'framegate_recordings_upload_backlog',
        'gauge',
        "Ready recordings of this node's sessions still on local disk (as of the last upload pass)",
        uploads.backlog,
      ],
      [
        'framegate_recordings_uploaded_total',
        'counter',
        'Recordings uploaded, verified and removed from local disk by this process',
        uploads.uploaded,
      ],
      [
        'framegate_recording_upload_failures_total',
        'counter',
        'Failed upload attempts of this process (each retried later)',
        uploads.failed,
      ],
    ];
    return lines
      .map(([name, type, help, value]) => single(name, type, help, value))
      .concat(this.events.render())
      .join('\n')
      .concat('\n');
  }
}
