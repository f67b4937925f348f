import type { JobSummary } from './jobs-api.schema';
import type { MediaJobEntity } from './media-job.entity';

/**
 * A job's record as the API answers it and its webhook carries it (events aside): no secret, no
 * path of this node.
 */
export function jobSummaryOf(job: MediaJobEntity, retentionHours: number): JobSummary {
  const ms = (from: Date | null, to: Date | null): number | null =>
    from && to ? to.getTime() - from.getTime() : null;
  const expireAt = job.finishedAt
    ? new Date(job.finishedAt.getTime() + retentionHours * 3_600_000)
    : null;
  return {
    id: job.id,
    type: job.type as JobSummary['type'],
    state: job.state,
    progress: job.progress,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    subject: job.subject,
    channel: job.channel,
    spec: job.spec,
    createdAt: job.createdAt.toISOString(),
    startedAt: job.startedAt?.toISOString() ?? null,
    finishedAt: job.finishedAt?.toISOString() ?? null,
    durations: {
      queuedMs: ms(job.createdAt, job.startedAt),
      runningMs: ms(job.startedAt, job.finishedAt),
      totalMs: ms(job.createdAt, job.finishedAt),
    },
    error: job.error,
    outputs: (job.outputs ?? []).map((o) => ({
      name: o.name,
      contentType: o.contentType,
      primary: o.primary,
      bytes: o.bytes,
      sha256: o.sha256,
      probe: o.probe,
      url: `/v1/media/jobs/${job.id}/result/${encodeURIComponent(o.name)}`,
    })),
    outputsExpireAt: (job.outputsExpiredAt ?? expireAt)?.toISOString() ?? null,
    outputsExpired: job.outputsExpiredAt !== null,
    webhook: job.webhookUrl ? { url: job.webhookUrl } : null,
  };
}
