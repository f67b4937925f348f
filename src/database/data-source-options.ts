import type { DataSourceOptions } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { AdminActionEntity } from '../audit/admin-action.entity';
import { ConnectionAuditEntity } from '../audit/connection-audit.entity';
import { NodeEventEntity } from '../audit/node-event.entity';
import { SessionEventEntity } from '../audit/session-event.entity';
import { TicketEntity } from '../auth/ticket.entity';
import { MediaJobEntity, MediaJobEventEntity } from '../jobs/media-job.entity';
import { RecordingEntity } from '../media/recording.entity';
import { RecordingWorkEntity } from '../media/recording-work.entity';
import { SessionMessageEntity } from '../sessions/session-message.entity';
import { SessionEntity } from '../sessions/session.entity';
import { ChannelQuotaEntity } from '../stream/channel-quota.entity';
import { WebhookAttemptEntity } from '../webhooks/webhook-attempt.entity';
import { WebhookDeliveryEntity } from '../webhooks/webhook-delivery.entity';

export const ENTITIES = [
  SessionEntity,
  SessionMessageEntity,
  SessionEventEntity,
  ConnectionAuditEntity,
  NodeEventEntity,
  RecordingEntity,
  RecordingWorkEntity,
  TicketEntity,
  ChannelQuotaEntity,
  AdminActionEntity,
  MediaJobEntity,
  MediaJobEventEntity,
  WebhookDeliveryEntity,
  WebhookAttemptEntity,
];

export interface DatabaseSettings {
  url: string;
  poolMax: number;
  nodeId: string;
}

/** The one data-source options object, used by the app and by the migration CLI. */
export function dataSourceOptions(settings: DatabaseSettings): DataSourceOptions {
  return {
    type: 'postgres',
    url: settings.url,
    entities: ENTITIES,
    migrations: MIGRATIONS,
    migrationsTableName: 'typeorm_migrations',
    migrationsTransactionMode: 'each',
    synchronize: false,
    migrationsRun: false,
    applicationName: `framegate:${settings.nodeId}`,
    extra: {
      max: settings.poolMax,
      connectionTimeoutMillis: 5_000,
      // Keep a broken server from hanging a request; statements here are all short.
      statement_timeout: 30_000,
    },
  };
}
