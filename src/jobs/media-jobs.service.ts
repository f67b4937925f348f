import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import type { Request } from 'express';
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Pool } from 'pg';
import { In, type DataSource, type Repository } from 'typeorm';
import { CURSOR_TIME_SQL, type Cursor, type Page, pageOf, SqlWhere } from '../admin/admin-query';
import { hasScope, type Principal } from '../auth/scopes';
import { AppError, type FieldProblem } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { exceedsJsonDepth, MAX_JSON_DEPTH } from '../common/json-depth';
import { parseOrThrow } from '../common/zod-body.pipe';
import { APP_CONFIG, type AppConfig } from '../config/config';
import type { StoredFile } from '../http/file-response';
import { readJsonBody } from '../http/json-body.interceptor';
import { hasBody } from '../http/error-response';
import { JobQueue } from '../queue/job-queue.service';
import { type WebhookSpec, webhookSpecSchema } from '../webhooks/webhook-url';
import { WebhookService } from '../webhooks/webhook.service';
import { engineLimits } from './engine';
import { JobInputs } from './job-inputs.service';
import { JobPaths } from './job-paths';
import { jobSummaryOf } from './job-view';
import { JobRunner } from './job-runner.service';
import { receiveMultipart, type UploadedFile } from './job-upload';
import {
  type JobSummary,
  type JobView,
  refSpecSchema,
  type SubmittedSpec,
  transactionConcatSchema,
} from './jobs-api.schema';
import { MediaJobEntity, MediaJobEventEntity, type MediaJobState } from './media-job.entity';
import {
  bossDb,
  inTransaction,
  MEDIA_JOB_QUEUE,
  type MediaJobMessage,
  poolOf,
  recordJobEvent,
} from './media-job-queue';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Events a job's record lists (the latest). */
const VIEW_EVENTS = 100;
/** How long DELETE waits for a running attempt's processes to be gone before it answers. */
const CANCEL_WAIT_MS = 5_000;
/** Parts beyond the images an `images-to-video` job may upload (its sound track). */
const EXTRA_PARTS = 1;

/** What a list of jobs filters by (validated by the controller). */
export interface JobFilter {
  state?: MediaJobState;
  cursor?: Cursor;
  limit: number;
}

/**
 * The media jobs API's logic: submissions (validated, inputs made local, then the row, its first
 * event and its pg-boss job written in one transaction), the records, cancellation and results.
 */
@Injectable()
export class MediaJobsService {
  private readonly logger = new Logger('MediaJobs');
  private readonly pool: Pool;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectDataSource() dataSource: DataSource,
    @InjectRepository(MediaJobEntity) private readonly jobs: Repository<MediaJobEntity>,
    @InjectRepository(MediaJobEventEntity)
    private readonly events: Repository<MediaJobEventEntity>,
    private readonly queue: JobQueue,
    private readonly inputs: JobInputs,
    private readonly runner: JobRunner,
    private readonly paths: JobPaths,
    private readonly webhooks: WebhookService,
  ) {
    this.pool = poolOf(dataSource);
  }

  /**
   * Takes a submission: JSON (the spec; inputs are recordings or a session's frames) or
   * multipart/form-data (a `spec` field and the file parts it names, streamed to the job's
   * folder). The folder is removed again if anything is refused.
   */
  async submit(principal: Principal, req: Request): Promise<JobView> {
    const multipart = req.is('multipart/form-data') === 'multipart/form-data';
    if (!hasBody(req)) {
      throw new AppError(ErrorCode.ValidationFailed, 'the request has no body: send a job spec', {
        fields: [{ field: '(root)', problem: 'required' }],
      });
    }
    if (!multipart && !req.is('application/json')) {
      throw new AppError(
        ErrorCode.UnsupportedMediaType,
        'send the job spec as application/json, or as the "spec" field of multipart/form-data with the files it names',
      );
    }
    const id = randomUUID();
    const jobDir = this.paths.job(id);
    try {
      let body: unknown;
      let uploads = new Map<string, UploadedFile>();
      if (multipart) {
        await mkdir(this.paths.inputs(id), { recursive: true });
        const received = await receiveMultipart(
          req,
          jobDir,
          {
            maxBytes: this.config.MEDIA_UPLOAD_MAX_BYTES,
            maxSpecBytes: this.config.HTTP_BODY_LIMIT_BYTES,
            maxFiles: engineLimits.MAX_IMAGES + EXTRA_PARTS,
            idleMs: this.config.HTTP_BODY_IDLE_TIMEOUT_MS,
          },
          (text) => parseSubmission(parseSpecText(text)),
        );
        body = parseSpecText(received.specText);
        uploads = received.files;
      } else {
        body = await readJsonBody(req, this.config);
        await mkdir(this.paths.inputs(id), { recursive: true });
      }
      const { spec, webhook } = parseSubmission(body);
      if (webhook) {
        await this.webhooks.validateUrl(webhook.url);
      }
      const local = await this.inputs.localize(principal, spec, uploads, jobDir);
      const stored: Record<string, unknown> = local.sessions
        ? { ...spec, sessions: local.sessions }
        : { ...spec };
      await inTransaction(this.pool, async (client) => {
        await client.query(
          `INSERT INTO media_jobs (id, subject, channel, type, state, spec, plan, max_attempts,
                                   input_bytes, webhook_url, webhook_secret)
           VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10)`,
          [
            id,
            principal.subject,
            principal.channel,
            spec.type,
            JSON.stringify(stored),
            JSON.stringify(local.plan),
            this.config.MEDIA_JOB_RETRY_LIMIT + 1,
            local.inputBytes,
            webhook?.url ?? null,
            webhook?.secret ?? null,
          ],
        );
        await recordJobEvent(client, {
          jobId: id,
          type: 'submitted',
          node: this.config.NODE_ID,
          subject: principal.subject,
          detail: { channel: principal.channel, type: spec.type, inputBytes: local.inputBytes },
        });
        const message: MediaJobMessage = { jobId: id };
        await this.queue.boss.send(MEDIA_JOB_QUEUE, message, {
          ...this.runner.sendOptions(),
          id,
          db: bossDb(client),
        });
      });
    } catch (err) {
      await rm(jobDir, { recursive: true, force: true });
      throw err;
    }
    this.logger.log(
      { jobId: id, subject: principal.subject, channel: principal.channel },
      'media job submitted',
    );
    // The job as accepted: read before the runner is woken, which may otherwise have started it
    // by the time the row is read (a 202 then said `running`, attempt 1).
    const view = await this.view(principal, id);
    this.runner.kick();
    return view;
  }

  /** The job's record, for its owner or an admin; anyone else gets the 404 of a missing job. */
  async view(principal: Principal, id: string): Promise<JobView> {
    const job = await this.findVisible(principal, id);
    const events = await this.events.find({
      where: { jobId: job.id },
      order: { at: 'DESC', id: 'DESC' },
      take: VIEW_EVENTS,
    });
    return {
      ...jobSummaryOf(job, this.config.MEDIA_JOB_RETENTION_HOURS),
      events: events.reverse().map((e) => ({
        at: e.at.toISOString(),
        type: e.type,
        node: e.node,
        subject: e.subject,
        detail: e.detail,
      })),
    };
  }

  /** The caller's jobs, newest first, in keyset pages. */
  async list(principal: Principal, filter: JobFilter): Promise<Page<JobSummary>> {
    const where = new SqlWhere();
    where.equals('subject', principal.subject);
    where.equals('state', filter.state);
    where.after('created_at', filter.cursor);
    const rows = await this.jobs.query<Array<{ id: string; cursor_at: string }>>(
      `SELECT id, ${CURSOR_TIME_SQL('created_at')} AS cursor_at FROM media_jobs ${where.sql()}
        ORDER BY created_at DESC, id DESC LIMIT ${filter.limit + 1}`,
      where.params,
    );
    const byId = new Map(
      (await this.jobs.findBy({ id: In(rows.map((r) => r.id)) })).map((j) => [j.id, j]),
    );
    return pageOf(
      rows.filter((r) => byId.has(r.id)),
      filter.limit,
      (r) => jobSummaryOf(byId.get(r.id) as MediaJobEntity, this.config.MEDIA_JOB_RETENTION_HOURS),
      (r) => ({ at: r.cursor_at, id: r.id }),
    );
  }

  /**
   * Cancels a queued or running job: final at once (the row and the pg-boss job in one
   * transaction), then a running attempt on this node is stopped and its processes are gone
   * before the answer. Cancelling a cancelled job again is a no-op; a finished one is 409.
   */
  async cancel(principal: Principal, id: string): Promise<JobView> {
    await this.findVisible(principal, id);
    const before = await inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ state: MediaJobState }>(
        `SELECT state FROM media_jobs WHERE id = $1 FOR UPDATE`,
        [id],
      );
      const state = rows[0]?.state;
      if (state !== 'queued' && state !== 'running') {
        return state;
      }
      await client.query(
        // A cancelled job sends no webhook: its secret is not needed again.
        `UPDATE media_jobs SET state = 'cancelled', finished_at = now(), updated_at = now(),
                webhook_secret = NULL
          WHERE id = $1`,
        [id],
      );
      await this.queue.boss.cancel(MEDIA_JOB_QUEUE, id, { db: bossDb(client) });
      await recordJobEvent(client, {
        jobId: id,
        type: 'cancelled',
        node: this.config.NODE_ID,
        subject: principal.subject,
        detail: { was: state },
      });
      return state;
    });
    if (before === 'completed' || before === 'failed') {
      throw new AppError(
        ErrorCode.Conflict,
        `the job has already ${before}: it cannot be cancelled`,
      );
    }
    if (before === 'running') {
      await Promise.race([
        this.runner.cancelLocal(id),
        new Promise((resolve) => setTimeout(resolve, CANCEL_WAIT_MS).unref()),
      ]);
      this.logger.log({ jobId: id, subject: principal.subject }, 'running media job cancelled');
    } else if (before === 'queued') {
      this.logger.log({ jobId: id, subject: principal.subject }, 'queued media job cancelled');
    }
    return this.view(principal, id);
  }

  /**
   * One output of a completed job: the primary one without a name. 409 while the job is not
   * completed or once retention removed its outputs; 404 for a name it does not have.
   */
  async output(principal: Principal, id: string, name?: string): Promise<StoredFile> {
    const job = await this.findVisible(principal, id);
    if (job.state !== 'completed') {
      throw new AppError(
        ErrorCode.Conflict,
        `the job is ${job.state}${job.error ? ` (${job.error})` : ''}: it has no result`,
      );
    }
    if (job.outputsExpiredAt) {
      throw new AppError(
        ErrorCode.Conflict,
        `the job's outputs were removed by retention at ${job.outputsExpiredAt.toISOString()}`,
      );
    }
    const outputs = job.outputs ?? [];
    const output =
      name === undefined ? outputs.find((o) => o.primary) : outputs.find((o) => o.name === name);
    if (!output) {
      throw new AppError(ErrorCode.NotFound, `the job has no output named "${name ?? ''}"`);
    }
    return {
      path: join(this.paths.outputs(job.id), output.name),
      contentType: output.contentType,
      filename: output.name,
      sha256: output.sha256,
      lastModified: job.finishedAt,
      what: `the output ${output.name}`,
    };
  }

  private async findVisible(principal: Principal, id: string): Promise<MediaJobEntity> {
    const job = UUID.test(id) ? await this.jobs.findOneBy({ id }) : null;
    if (!job || (job.subject !== principal.subject && !hasScope(principal, 'admin'))) {
      throw new AppError(ErrorCode.NotFound, 'media job not found');
    }
    return job;
  }
}

/** The `spec` field of a multipart submission, parsed like a JSON body. */
function parseSpecText(text: string): unknown {
  if (exceedsJsonDepth(text, MAX_JSON_DEPTH)) {
    throw new AppError(ErrorCode.BadRequest, `the spec nests deeper than ${MAX_JSON_DEPTH} levels`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new AppError(ErrorCode.BadRequest, 'the "spec" field is malformed JSON');
  }
}

/** A submission: the job spec and, optionally, where to report its end. */
interface Submission {
  spec: SubmittedSpec;
  webhook: WebhookSpec | null;
}

/**
 * Validates a submission: the spec (a `concat` with `transactionId` has its own, smaller schema)
 * and its optional `webhook`; every bad field of both is reported at once.
 */
function parseSubmission(body: unknown): Submission {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new AppError(ErrorCode.ValidationFailed, 'the job spec must be a JSON object', {
      fields: [{ field: '(root)', problem: 'must be an object' }],
    });
  }
  const { webhook, ...spec } = body as Record<string, unknown>;
  const problems: FieldProblem[] = [];
  const attempt = <T>(parse: () => T, prefix: string): T | null => {
    try {
      return parse();
    } catch (err) {
      if (err instanceof AppError && err.extra.fields) {
        problems.push(
          ...err.extra.fields.map((f) => ({
            field: prefix + (f.field === '(root)' ? '' : f.field),
            problem: f.problem,
          })),
        );
        return null;
      }
      throw err;
    }
  };
  const parsedSpec = attempt(
    () =>
      spec.type === 'concat' && 'transactionId' in spec
        ? parseOrThrow(transactionConcatSchema, spec, 'job spec')
        : parseOrThrow(refSpecSchema, spec, 'job spec'),
    '',
  );
  const parsedWebhook =
    webhook === undefined
      ? null
      : attempt(() => parseOrThrow(webhookSpecSchema, webhook, 'webhook'), 'webhook.');
  if (problems.length > 0 || parsedSpec === null) {
    throw new AppError(
      ErrorCode.ValidationFailed,
      `job spec is invalid: ${problems.map((f) => `${f.field || '(root)'}: ${f.problem}`).join('; ')}`,
      { fields: problems.map((f) => ({ field: f.field || '(root)', problem: f.problem })) },
    );
  }
  return { spec: parsedSpec, webhook: parsedWebhook };
}
