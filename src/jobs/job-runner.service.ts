import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
  type OnModuleInit,
} from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { randomUUID } from 'node:crypto';
import { link, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Pool, PoolClient } from 'pg';
import type PgBoss from 'pg-boss';
import type { DataSource } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { locateTool } from '../media/ffmpeg-locator';
import { JobQueue, QUEUE_SCHEMA } from '../queue/job-queue.service';
import {
  BadInputError,
  type EngineJob,
  framesFromSpool,
  JobCancelledError,
  type JobOutput,
  runJob,
} from './engine';
import { JobBudget } from './job-budget';
import { JobNotifier } from './job-notifier.service';
import { IN_DIR, JobPaths, OUT_DIR } from './job-paths';
import { killProcessesIn } from './orphan-processes';
import { type JobPlan, planSchema } from './jobs-api.schema';
import {
  bossDb,
  failForGood,
  inTransaction,
  MEDIA_JOB_QUEUE,
  type MediaJobMessage,
  poolOf,
  recordJobEvent,
} from './media-job-queue';

/** How often the runner looks for work it may start (a local submission wakes it at once). */
const POLL_MS = 1_000;
/** Progress is written at most this often per job (and the write tells a run it was superseded). */
const PROGRESS_WRITE_MS = 1_000;
/** pg-boss marks an active job expired this long after the runner's own timeout would have hit. */
const EXPIRY_SLACK_S = 300;
/** Longest error text kept on a job. */
const MAX_ERROR_CHARS = 2_000;

/** Why a run was stopped from outside; null while it runs on its own. */
type StopReason = 'cancel' | 'shutdown' | 'timeout' | 'superseded';

/** One attempt of a job on this node. */
interface Run {
  jobId: string;
  token: string;
  attempt: number;
  controller: AbortController;
  reason: StopReason | null;
  /** Settles when the attempt is over and its outcome recorded. */
  done: Promise<void>;
}

/** A job the runner took from the queue: its row's fields the run needs. */
interface Claimed {
  jobId: string;
  token: string;
  attempt: number;
  plan: unknown;
}

/**
 * Runs media jobs from the pg-boss queue `media-job` on this node.
 *
 * Taking a job is one transaction: pg-boss's fetch (the job becomes `active`) and the row's
 * `running` with this node's id and a fresh run token. Every later write of the attempt
 * (progress, completion, failure) is conditional on that token and the state `running`, in a
 * transaction that also settles the pg-boss job: an attempt that was superseded (cancelled, or
 * taken over after its node was presumed dead) can neither report progress nor complete the job,
 * so a job completes exactly once.
 *
 * Each attempt runs in its own folder (`runs/<token>`, hard links to the inputs); its outputs are
 * moved to the job's `out/` by a rename inside the completing transaction, with the row locked.
 *
 * Restarts: pg-boss would retry an active job only after its expiry (hours for media jobs), so a
 * node starting up takes back the jobs its previous process was running (rows `running` with its
 * NODE_ID): each is failed in pg-boss (retried after the backoff, counting as an attempt) and
 * queued again. A node that never comes back leaves its jobs to pg-boss's expiry. NODE_ID must
 * therefore be unique per node and stable across its restarts (the default, the host name, is).
 */
@Injectable()
export class JobRunner implements OnModuleInit, OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('JobRunner');
  private readonly pool: Pool;
  private readonly boss: PgBoss;
  private readonly runs = new Map<string, Run>();
  private readonly tools: { ffmpeg: string; ffprobe: string };
  private timer: NodeJS.Timeout | undefined;
  private claiming: Promise<void> | null = null;
  private claimAgain = false;
  private stopping = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectDataSource() dataSource: DataSource,
    private readonly queue: JobQueue,
    private readonly budget: JobBudget,
    private readonly paths: JobPaths,
    private readonly notifier: JobNotifier,
  ) {
    this.pool = poolOf(dataSource);
    this.boss = queue.boss;
    this.tools = {
      ffmpeg: locateTool('ffmpeg', config.FFMPEG_PATH).path,
      ffprobe: locateTool('ffprobe', config.FFPROBE_PATH).path,
    };
  }

  /** The pg-boss options of a media job (set on each job, so a config change applies to new jobs). */
  sendOptions(): PgBoss.SendOptions {
    return {
      retryLimit: this.config.MEDIA_JOB_RETRY_LIMIT,
      retryDelay: this.config.MEDIA_JOB_RETRY_DELAY_S,
      retryBackoff: true,
      expireInSeconds: this.config.MEDIA_JOB_TIMEOUT_MINUTES * 60 + EXPIRY_SLACK_S,
      // How long a job may wait in the queue before pg-boss drops it (the retention sweep then
      // fails its row).
      retentionMinutes: this.config.MEDIA_JOB_RETENTION_HOURS * 60,
    };
  }

  async onModuleInit(): Promise<void> {
    await this.queue.createQueue(MEDIA_JOB_QUEUE, {
      name: MEDIA_JOB_QUEUE,
      ...this.sendOptions(),
    });
  }

  /**
   * Once JobQueue started pg-boss (a global module: its hooks run first). A gateway runs no
   * media jobs: its cores are for ingest; workers (or `all` nodes) take them from the queue.
   */
  async onApplicationBootstrap(): Promise<void> {
    if (this.config.NODE_ROLE === 'gateway') {
      this.stopping = true;
      return;
    }
    await this.recover();
    this.timer = setInterval(() => this.kick(), POLL_MS);
    this.timer.unref();
    this.kick();
  }

  /**
   * Stops taking jobs and stops the running ones; each goes back to the queue (a retry) while the
   * database is still there (Nest destroys modules before it closes the pool).
   */
  async onModuleDestroy(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    await this.claiming;
    const runs = [...this.runs.values()];
    for (const run of runs) {
      this.stop(run, 'shutdown');
    }
    await Promise.all(runs.map((r) => r.done));
  }

  /** Jobs running on this node now. */
  get active(): number {
    return this.runs.size;
  }

  /** Looks for jobs to start now (after a submission, a job's end, or on the poll). */
  kick(): void {
    if (this.stopping) {
      return;
    }
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claiming = this.claimWhileRoom()
      .catch((err: unknown) =>
        this.logger.warn({ err: messageOf(err) }, 'taking media jobs failed; retrying'),
      )
      .finally(() => {
        this.claiming = null;
        if (this.claimAgain) {
          this.claimAgain = false;
          this.kick();
        }
      });
  }

  /**
   * Stops a job's attempt on this node (after the API cancelled it) and resolves once its
   * processes are gone; false when it was not running here.
   */
  async cancelLocal(jobId: string): Promise<boolean> {
    const run = this.runs.get(jobId);
    if (!run) {
      return false;
    }
    this.stop(run, 'cancel');
    await run.done;
    return true;
  }

  private stop(run: Run, reason: StopReason): void {
    run.reason ??= reason;
    run.controller.abort();
  }

  private async claimWhileRoom(): Promise<void> {
    while (!this.stopping && this.budget.hasRoom(this.runs.size)) {
      const claimed = await this.claim();
      if (claimed === null) {
        return;
      }
      if (claimed !== 'skipped') {
        this.start(claimed);
      }
    }
  }

  /**
   * Takes the next job: pg-boss's fetch and the row's `running` in one transaction. `skipped`: the
   * job's row was already final (cancelled while queued), and its pg-boss job is now settled.
   */
  private claim(): Promise<Claimed | 'skipped' | null> {
    const token = randomUUID();
    return inTransaction(this.pool, async (client) => {
      const db = bossDb(client);
      const [job] = await this.boss.fetch<MediaJobMessage>(MEDIA_JOB_QUEUE, { batchSize: 1, db });
      if (!job) {
        return null;
      }
      const { rows } = await client.query<{ attempts: number; plan: unknown }>(
        `UPDATE media_jobs
            SET state = 'running', node = $2, run_token = $3, attempts = attempts + 1,
                progress = 0, started_at = coalesce(started_at, now()), run_started_at = now(),
                updated_at = now()
          WHERE id = $1 AND state IN ('queued', 'running')
          RETURNING attempts, plan`,
        [job.id, this.config.NODE_ID, token],
      );
      const row = rows[0];
      if (!row) {
        await this.boss.complete(MEDIA_JOB_QUEUE, job.id, { skipped: 'no longer queued' }, { db });
        return 'skipped';
      }
      await recordJobEvent(client, {
        jobId: job.id,
        type: 'started',
        node: this.config.NODE_ID,
        detail: { attempt: row.attempts, runToken: token },
      });
      return { jobId: job.id, token, attempt: row.attempts, plan: row.plan };
    });
  }

  private start(claimed: Claimed): void {
    const run: Run = {
      jobId: claimed.jobId,
      token: claimed.token,
      attempt: claimed.attempt,
      controller: new AbortController(),
      reason: null,
      done: Promise.resolve(),
    };
    this.runs.set(run.jobId, run);
    run.done = this.execute(run, claimed.plan)
      .catch((err: unknown) =>
        this.logger.error(
          { err, jobId: run.jobId },
          'recording the outcome of a media job failed; it is retried after its expiry',
        ),
      )
      .finally(() => {
        this.runs.delete(run.jobId);
        this.kick();
      });
  }

  private async execute(run: Run, storedPlan: unknown): Promise<void> {
    const dir = this.paths.run(run.jobId, run.token);
    const timeout = setTimeout(
      () => this.stop(run, 'timeout'),
      this.config.MEDIA_JOB_TIMEOUT_MINUTES * 60_000,
    );
    const progress = new ProgressWriter(
      this.pool,
      run,
      (reason) => this.stop(run, reason),
      this.logger,
    );
    this.logger.log({ jobId: run.jobId, attempt: run.attempt }, 'media job started');
    try {
      await this.prepareRunDir(run.jobId, dir);
      const job = await this.resolvePlan(planSchema.parse(storedPlan), dir);
      const outputs = await runJob(job, {
        dir,
        signal: run.controller.signal,
        onProgress: (percent) => progress.report(percent),
        tools: this.tools,
      });
      await progress.settled();
      await this.complete(run, dir, outputs);
    } catch (err) {
      await progress.settled();
      await this.settleFailure(run, err);
    } finally {
      clearTimeout(timeout);
      await rm(dir, { recursive: true, force: true }).catch((err: unknown) =>
        this.logger.warn({ err: messageOf(err), jobId: run.jobId }, 'a run folder was not removed'),
      );
    }
  }

  /** The attempt's folder: hard links to every input, so the engine sees only its own folder. */
  private async prepareRunDir(jobId: string, dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
    const source = this.paths.inputs(jobId);
    const target = join(dir, IN_DIR);
    await mkdir(target, { recursive: true });
    for (const entry of await readdir(source, { recursive: true, withFileTypes: true })) {
      const from = join(entry.parentPath, entry.name);
      const to = join(target, relative(source, from));
      if (entry.isDirectory()) {
        await mkdir(to, { recursive: true });
      } else {
        await link(from, to);
      }
    }
  }

  /** The engine's job: a session's stored frames become image files in the run's folder. */
  private async resolvePlan(plan: JobPlan, dir: string): Promise<EngineJob> {
    if (plan.type !== 'images-to-video' || !('spool' in plan.images)) {
      return plan as EngineJob;
    }
    const { spool, lastDurationMs } = plan.images;
    const framesDir = `${IN_DIR}/frames`;
    const frames = await framesFromSpool(join(dir, spool), join(dir, framesDir), {
      maxBytes: this.config.MEDIA_UPLOAD_MAX_BYTES,
      lastDurationMs,
    });
    return {
      ...plan,
      images: {
        files: frames.files.map((name) => `${framesDir}/${name}`),
        durationsMs: frames.durationsMs,
      },
    };
  }

  /**
   * Completes the job if this attempt still holds it: the row is locked, the outputs are moved
   * into place by a rename, and the row and the pg-boss job are completed in one transaction.
   */
  private async complete(run: Run, dir: string, outputs: JobOutput[]): Promise<void> {
    const finalOut = this.paths.outputs(run.jobId);
    const completed = await inTransaction(this.pool, async (client) => {
      if (!(await this.holds(client, run))) {
        return false;
      }
      // A crash between an earlier rename and its commit leaves an `out/` of no completed job.
      await rm(finalOut, { recursive: true, force: true });
      await rename(join(dir, OUT_DIR), finalOut);
      // What is left of the attempt (links to the inputs, work files) goes before anyone sees
      // the job completed.
      await rm(dir, { recursive: true, force: true });
      await client.query(
        `UPDATE media_jobs SET state = 'completed', progress = 100, outputs = $2, error = NULL,
                finished_at = now(), updated_at = now()
          WHERE id = $1`,
        [run.jobId, JSON.stringify(outputs)],
      );
      await this.boss.complete(
        MEDIA_JOB_QUEUE,
        run.jobId,
        { outputs: outputs.map((o) => o.name) },
        { db: bossDb(client) },
      );
      await recordJobEvent(client, {
        jobId: run.jobId,
        type: 'completed',
        node: this.config.NODE_ID,
        detail: {
          attempt: run.attempt,
          runToken: run.token,
          outputs: outputs.map((o) => ({ name: o.name, bytes: o.bytes, sha256: o.sha256 })),
        },
      });
      return true;
    });
    if (completed) {
      this.logger.log(
        { jobId: run.jobId, attempt: run.attempt, outputs: outputs.length },
        'media job completed',
      );
      await this.notifier.notifyFinal(run.jobId);
    } else {
      this.logger.log({ jobId: run.jobId, attempt: run.attempt }, 'a superseded attempt ended');
    }
  }

  /** Records how an attempt that did not complete ended. */
  private async settleFailure(run: Run, err: unknown): Promise<void> {
    const reason = run.reason;
    if (reason === 'cancel' || reason === 'superseded') {
      // The row was settled by whoever stopped it (the cancel, or the attempt that took over).
      this.logger.log(
        { jobId: run.jobId, attempt: run.attempt, reason },
        'media job attempt stopped',
      );
      return;
    }
    if (reason === 'timeout') {
      await this.failForGood(
        run,
        `the job ran longer than MEDIA_JOB_TIMEOUT_MINUTES (${this.config.MEDIA_JOB_TIMEOUT_MINUTES} min)`,
      );
      return;
    }
    if (reason === null && err instanceof BadInputError) {
      await this.failForGood(run, err.message);
      return;
    }
    const message = reason === 'shutdown' ? 'the node stopped during the job' : this.describe(err);
    await this.retryOrFail(run, message);
  }

  /** A permanent failure (bad input, timeout): no retry. */
  private async failForGood(run: Run, message: string): Promise<void> {
    const failed = await inTransaction(this.pool, async (client) => {
      if (!(await this.holds(client, run))) {
        return false;
      }
      await this.markFailed(client, run.jobId, message, run.attempt);
      await failForGood(this.boss, client, QUEUE_SCHEMA, run.jobId, message);
      return true;
    });
    if (failed) {
      this.logger.log(
        { jobId: run.jobId, attempt: run.attempt, reason: message },
        'media job failed',
      );
      await this.notifier.notifyFinal(run.jobId);
    }
  }

  /**
   * A transient failure (or this node stopping): pg-boss retries the job after its backoff, or,
   * with no retry left, the job fails with the last error.
   */
  private async retryOrFail(run: Run, message: string): Promise<void> {
    const outcome = await inTransaction(this.pool, async (client) => {
      if (!(await this.holds(client, run))) {
        return null;
      }
      return this.requeue(client, run.jobId, message, run.attempt);
    });
    if (outcome === 'failed') {
      this.logger.warn({ jobId: run.jobId, reason: message }, 'media job failed after its retries');
      await this.notifier.notifyFinal(run.jobId);
    } else if (outcome === 'retry') {
      this.logger.warn({ jobId: run.jobId, reason: message }, 'media job attempt failed; retrying');
    }
  }

  /**
   * Fails the pg-boss job (it becomes `retry`, or `failed` with no retry left) and sets the row
   * to match: queued again with the error kept, or failed.
   */
  private async requeue(
    client: PoolClient,
    jobId: string,
    message: string,
    attempt: number,
  ): Promise<'retry' | 'failed'> {
    const db = bossDb(client);
    await this.boss.fail(MEDIA_JOB_QUEUE, jobId, { reason: message }, { db });
    const job = await this.boss.getJobById(MEDIA_JOB_QUEUE, jobId, { db, includeArchive: false });
    if (job?.state === 'retry' || job?.state === 'created') {
      await client.query(
        `UPDATE media_jobs SET state = 'queued', run_token = NULL, error = $2, updated_at = now()
          WHERE id = $1`,
        [jobId, message],
      );
      await recordJobEvent(client, {
        jobId,
        type: 'retried',
        node: this.config.NODE_ID,
        detail: { attempt, error: message, retryAfter: job.startAfter },
      });
      return 'retry';
    }
    await this.markFailed(client, jobId, `failed after ${attempt} attempts: ${message}`, attempt);
    return 'failed';
  }

  private async markFailed(
    client: PoolClient,
    jobId: string,
    message: string,
    attempt: number,
  ): Promise<void> {
    await client.query(
      `UPDATE media_jobs SET state = 'failed', error = $2, finished_at = now(), updated_at = now()
        WHERE id = $1`,
      [jobId, message],
    );
    await recordJobEvent(client, {
      jobId,
      type: 'failed',
      node: this.config.NODE_ID,
      detail: { attempt, error: message },
    });
  }

  /** Whether this attempt still holds the job; locks the row for the rest of the transaction. */
  private async holds(client: PoolClient, run: Run): Promise<boolean> {
    const { rows } = await client.query<{ state: string; run_token: string | null }>(
      `SELECT state, run_token FROM media_jobs WHERE id = $1 FOR UPDATE`,
      [run.jobId],
    );
    return rows[0]?.state === 'running' && rows[0].run_token === run.token;
  }

  /**
   * Takes back the jobs this node's previous process was running: their attempts died with it
   * (tools they left running in the attempt's folder are killed). Each is retried (or, with no
   * retry left, failed) as if the attempt had failed now.
   */
  private async recover(): Promise<void> {
    const { rows } = await this.pool.query<{ id: string; attempts: number; run_token: string }>(
      `SELECT id, attempts, run_token FROM media_jobs WHERE state = 'running' AND node = $1`,
      [this.config.NODE_ID],
    );
    for (const row of rows) {
      const orphans = await killProcessesIn(this.paths.runs(row.id));
      const outcome = await inTransaction(this.pool, async (client) => {
        const locked = await client.query(
          `SELECT 1 FROM media_jobs WHERE id = $1 AND state = 'running' AND run_token = $2 FOR UPDATE`,
          [row.id, row.run_token],
        );
        if (locked.rowCount === 0) {
          return null;
        }
        await recordJobEvent(client, {
          jobId: row.id,
          type: 'reclaimed',
          node: this.config.NODE_ID,
          detail: { attempt: row.attempts, runToken: row.run_token },
        });
        return this.requeue(client, row.id, 'the node restarted during the job', row.attempts);
      });
      await rm(this.paths.runs(row.id), { recursive: true, force: true });
      this.logger.warn(
        { jobId: row.id, outcome, killedOrphans: orphans },
        'media job taken back after a restart',
      );
      if (outcome === 'failed') {
        await this.notifier.notifyFinal(row.id);
      }
    }
    // Jobs that ended while their webhook was being handed over (a crash in between).
    await this.notifier.catchUp();
  }

  /** An error as kept on the job: its message, without this node's paths. */
  private describe(err: unknown): string {
    const text = err instanceof JobCancelledError ? 'the job was stopped' : messageOf(err);
    return text.split(this.paths.root).join('<jobs>').slice(0, MAX_ERROR_CHARS);
  }
}

/**
 * Writes an attempt's progress at most once a second, each write conditional on the attempt still
 * holding the job; a write that finds it does not tells the run it was superseded (cancelled or
 * taken over elsewhere), which stops it. One write in flight at a time; the latest value wins.
 */
class ProgressWriter {
  private latest = -1;
  private written = -1;
  private lastWriteAt = 0;
  private inFlight: Promise<void> = Promise.resolve();
  private writing = false;

  constructor(
    private readonly pool: Pool,
    private readonly run: Run,
    private readonly superseded: (reason: StopReason) => void,
    private readonly logger: Logger,
  ) {}

  report(percent: number): void {
    this.latest = percent;
    const now = Date.now();
    if (this.writing || now - this.lastWriteAt < PROGRESS_WRITE_MS) {
      return;
    }
    this.lastWriteAt = now;
    this.writing = true;
    this.inFlight = this.write().finally(() => {
      this.writing = false;
    });
  }

  /** Resolves once no write is in flight (before the attempt's outcome is recorded). */
  settled(): Promise<void> {
    return this.inFlight;
  }

  private async write(): Promise<void> {
    if (this.latest === this.written) {
      return;
    }
    const value = this.latest;
    try {
      const result = await this.pool.query(
        `UPDATE media_jobs SET progress = $3, updated_at = now()
          WHERE id = $1 AND run_token = $2 AND state = 'running'`,
        [this.run.jobId, this.run.token, value],
      );
      this.written = value;
      if (result.rowCount === 0) {
        this.superseded('superseded');
      }
    } catch (err) {
      // Progress is advisory: the job goes on, and the next write tries again.
      this.logger.warn({ err: messageOf(err), jobId: this.run.jobId }, 'job progress not written');
    }
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
