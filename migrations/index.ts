import { InitialSchema1764000000000 } from './1764000000000-InitialSchema';
import { NodeEvents1764900000000 } from './1764900000000-NodeEvents';
import { AuditRefusalAggregation1765000000000 } from './1765000000000-AuditRefusalAggregation';
import { AdminApi1765100000000 } from './1765100000000-AdminApi';
import { MessageRecordingTime1765200000000 } from './1765200000000-MessageRecordingTime';
import { PgBoss1765300000000 } from './1765300000000-PgBoss';
import { MediaJobs1765400000000 } from './1765400000000-MediaJobs';
import { Webhooks1765500000000 } from './1765500000000-Webhooks';
import { ChannelVideoPolicy1765600000000 } from './1765600000000-ChannelVideoPolicy';
import { RecordingDecodeCheck1765700000000 } from './1765700000000-RecordingDecodeCheck';
import { ClusterNodes1765710000000 } from './1765710000000-ClusterNodes';
import { ConnectionLeases1765740000000 } from './1765740000000-ConnectionLeases';
import { RecordingWork1765830000000 } from './1765830000000-RecordingWork';
import { RecordingStorage1765840000000 } from './1765840000000-RecordingStorage';

/** Every migration, in order; listed explicitly so the same list works from ts and from dist. */
export const MIGRATIONS = [
  InitialSchema1764000000000,
  NodeEvents1764900000000,
  AuditRefusalAggregation1765000000000,
  AdminApi1765100000000,
  MessageRecordingTime1765200000000,
  PgBoss1765300000000,
  MediaJobs1765400000000,
  Webhooks1765500000000,
  ChannelVideoPolicy1765600000000,
  RecordingDecodeCheck1765700000000,
  ClusterNodes1765710000000,
  ConnectionLeases1765740000000,
  RecordingWork1765830000000,
  RecordingStorage1765840000000,
];
