import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { copyFile, link, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { DataSource, Repository } from 'typeorm';
import { paramDocuments } from '../admin/admin-query';
import { hasScope, type Principal } from '../auth/scopes';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { APP_CONFIG, type AppConfig, spoolDirOf } from '../config/config';
import { RecordingEntity } from '../media/recording.entity';
import type { SessionEntity } from '../sessions/session.entity';
import { SessionsService } from '../sessions/sessions.service';
import { RecordingStore } from '../storage/recording-store';
import { describeStorageError } from '../storage/upload-policy';
import { engineLimits, type LocalSingle } from './engine';
import { IN_DIR } from './job-paths';
import type { UploadedFile } from './job-upload';
import type {
  ImagesRef,
  InputRef,
  JobPlan,
  SubmittedSpec,
  TransactionConcat,
} from './jobs-api.schema';

/** A job's inputs made local: the plan the runner runs, and what the inputs weigh. */
export interface LocalInputs {
  plan: JobPlan;
  inputBytes: number;
  /** For `concat` of a transaction: the sessions found, in order (recorded in the job's spec). */
  sessions?: string[];
}

/** A recording's download from storage into a job gives up after this long. */
const DOWNLOAD_TIMEOUT_MS = 10 * 60_000;

type PlanImages = Extract<JobPlan, { type: 'images-to-video' }>['images'];

/**
 * Turns a submitted spec's input references into files in the job's folder: uploaded parts are
 * already there (`in/u-<name>`); a recording or a session's spool is hard-linked in (copied across
 * file systems), so the job keeps its input even if retention removes the session meanwhile. A
 * recording that lives on S3-compatible storage is downloaded into the folder.
 *
 * A recording is visible to its session's subject, or to a caller with `admin`; anything else is
 * answered exactly like a missing session (404), so ids cannot be probed. A recording that is not
 * ready is 409.
 */
@Injectable()
export class JobInputs {
  private readonly spoolDir: string;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectDataSource() private readonly db: DataSource,
    private readonly sessions: SessionsService,
    @InjectRepository(RecordingEntity) private readonly recordings: Repository<RecordingEntity>,
    private readonly store: RecordingStore,
  ) {
    // Where the stream runtime keeps each session's spool (SessionRegistry.spoolPath).
    this.spoolDir = spoolDirOf(config);
  }

  async localize(
    principal: Principal,
    spec: SubmittedSpec,
    uploads: Map<string, UploadedFile>,
    jobDir: string,
  ): Promise<LocalInputs> {
    const ctx = new Localizing(this, principal, uploads, jobDir);
    const { plan, sessions } = await this.mapSpec(ctx, spec);
    const unused = [...uploads.keys()].filter((name) => !ctx.usedUploads.has(name));
    if (unused.length > 0) {
      throw invalid(
        unused.map((name) => ({ field: name, problem: 'file part not referenced by the spec' })),
      );
    }
    return { plan, inputBytes: ctx.bytes, sessions };
  }

  private async mapSpec(
    ctx: Localizing,
    spec: SubmittedSpec,
  ): Promise<{ plan: JobPlan; sessions?: string[] }> {
    switch (spec.type) {
      case 'images-to-video':
        return {
          plan: {
            ...spec,
            images: await ctx.images(spec.images, 'images'),
            audio: spec.audio ? await ctx.single(spec.audio, 'audio') : undefined,
          },
        };
      case 'extract-audio':
        return { plan: { ...spec, input: await ctx.single(spec.input, 'input') } };
      case 'transcode':
        return { plan: { ...spec, input: await ctx.single(spec.input, 'input') } };
      case 'upscale':
        return { plan: { ...spec, input: await ctx.single(spec.input, 'input') } };
      case 'thumbnails':
        return { plan: { ...spec, input: await ctx.single(spec.input, 'input') } };
      case 'concat': {
        if ('transactionId' in spec) {
          const sessions = await this.transactionSessions(ctx.principal, spec);
          const inputs: LocalSingle[] = [];
          for (const [i, id] of sessions.entries()) {
            inputs.push(await ctx.single({ recording: id }, `transactionId (session ${i + 1})`));
          }
          return { plan: { type: 'concat', inputs }, sessions };
        }
        const inputs: LocalSingle[] = [];
        for (const [i, input] of spec.inputs.entries()) {
          inputs.push(await ctx.single(input, `inputs.${i}`));
        }
        return { plan: { type: 'concat', inputs } };
      }
    }
  }

  /**
   * The caller's sessions (an admin's: anyone's) whose `open` params have this transactionId, in
   * the order they were opened; each must have a ready recording.
   */
  private async transactionSessions(
    principal: Principal,
    spec: TransactionConcat,
  ): Promise<string[]> {
    const docs = paramDocuments('transactionId', spec.transactionId);
    const params: unknown[] = [...docs];
    const contains = docs.map((_, i) => `s.params @> $${i + 1}::jsonb`).join(' OR ');
    let owner = '';
    if (!hasScope(principal, 'admin')) {
      params.push(principal.subject);
      owner = `AND s.subject = $${params.length}`;
    }
    const rows = await this.db.query<
      Array<{ id: string; status: string | null; failure_reason: string | null }>
    >(
      `SELECT s.id, r.status, r.failure_reason
         FROM sessions s LEFT JOIN recordings r ON r.session_id = s.id
        WHERE (${contains}) ${owner}
        ORDER BY s.created_at, s.id
        LIMIT ${engineLimits.MAX_CONCAT_INPUTS + 1}`,
      params,
    );
    if (rows.length === 0) {
      throw new AppError(
        ErrorCode.NotFound,
        `no session of yours has the transactionId "${spec.transactionId}"`,
      );
    }
    if (rows.length > engineLimits.MAX_CONCAT_INPUTS) {
      throw invalid([
        {
          field: 'transactionId',
          problem: `the transaction has more than ${engineLimits.MAX_CONCAT_INPUTS} sessions; list the recordings in inputs`,
        },
      ]);
    }
    if (rows.length < 2) {
      throw new AppError(
        ErrorCode.Conflict,
        `the transaction "${spec.transactionId}" has one session: concat needs at least two recordings`,
      );
    }
    return rows.map((r) => r.id);
  }

  /** A session's ready recording, linked into the job's folder; 404 if not visible, 409 if not ready. */
  async linkRecording(
    principal: Principal,
    sessionId: string,
    field: string,
    jobDir: string,
  ): Promise<{ file: string; bytes: number }> {
    const session = await this.visibleSession(principal, sessionId, field);
    const recording = await this.recordings.findOneBy({ sessionId: session.id });
    if (!recording || recording.status !== 'ready') {
      throw notReady(field, session.id, recording);
    }
    const file = `${IN_DIR}/rec-${session.id}.mp4`;
    const target = join(jobDir, file);
    const gone = (): AppError =>
      conflict(field, `the recording of session ${session.id} is no longer stored`);
    if (recording.storage === 'local' && recording.path) {
      try {
        return { file, bytes: await linkInto(recording.path, target, gone) };
      } catch (err) {
        // The upload may have moved the file to storage after the row was read.
        const now = await this.recordings.findOneBy({ id: recording.id });
        if (now?.storage !== 's3') {
          throw err;
        }
        return { file, bytes: await this.fetchObject(now, field, target) };
      }
    }
    if (recording.storage === 's3') {
      return { file, bytes: await this.fetchObject(recording, field, target) };
    }
    throw gone();
  }

  /** Downloads a recording that lives on S3 into the job's folder; 503 when storage fails. */
  private async fetchObject(
    recording: RecordingEntity,
    field: string,
    target: string,
  ): Promise<number> {
    try {
      await this.store.download(
        recording.objectKey as string,
        target,
        AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS),
      );
    } catch (err) {
      await rm(target, { force: true });
      throw new AppError(
        ErrorCode.Unavailable,
        `${field}: the recording storage is unavailable (${describeStorageError(err)})`,
        { retryAfterS: 10 },
      );
    }
    return (await stat(target)).size;
  }

  /**
   * A session's stored frames: its spool linked into the job's folder, read into images when the
   * job runs. The frames are final once its recording is ready; the spool is kept after that only
   * with KEEP_SPOOL=true, and lives on the node that recorded the session.
   */
  async linkSessionFrames(
    principal: Principal,
    sessionId: string,
    field: string,
    jobDir: string,
  ): Promise<{ images: PlanImages; bytes: number }> {
    const session = await this.visibleSession(principal, sessionId, field);
    const codec = session.video.codec ?? 'jpeg';
    if (codec !== 'jpeg') {
      throw new AppError(
        ErrorCode.ValidationFailed,
        `${field}: session ${session.id} sent ${codec} video, not images; use its recording ` +
          '(transcode, thumbnails, extract-audio)',
      );
    }
    const recording = await this.recordings.findOneBy({ sessionId: session.id });
    if (!recording || recording.status !== 'ready') {
      throw notReady(field, session.id, recording);
    }
    if (session.node !== this.config.NODE_ID) {
      throw conflict(
        field,
        `the frames of session ${session.id} are stored on node ${session.node}; submit the job there`,
      );
    }
    const spool = `${IN_DIR}/frames-${session.id}.spool`;
    const bytes = await linkInto(
      join(this.spoolDir, `${session.id}.spool`),
      join(jobDir, spool),
      () =>
        conflict(
          field,
          `the frames of session ${session.id} are no longer stored (a session's spool is ` +
            'removed once its recording is ready, unless the node runs with KEEP_SPOOL=true)',
        ),
    );
    const fps = session.video.fps ?? this.config.RECORDING_FPS;
    return { images: { spool, lastDurationMs: Math.max(1, Math.round(1000 / fps)) }, bytes };
  }

  private async visibleSession(
    principal: Principal,
    sessionId: string,
    field: string,
  ): Promise<SessionEntity> {
    try {
      return await this.sessions.findVisible(principal, sessionId);
    } catch (err) {
      if (err instanceof AppError && err.code === ErrorCode.NotFound) {
        throw new AppError(ErrorCode.NotFound, `${field}: session ${sessionId} not found`);
      }
      throw err;
    }
  }
}

/** One submission being made local: which uploads it used, what its inputs weigh. */
class Localizing {
  readonly usedUploads = new Set<string>();
  bytes = 0;
  /** Recordings already linked, by session id: one file however often it is named. */
  private readonly linked = new Map<string, string>();

  constructor(
    private readonly inputs: JobInputs,
    readonly principal: Principal,
    private readonly uploads: Map<string, UploadedFile>,
    private readonly jobDir: string,
  ) {}

  async single(ref: InputRef, field: string): Promise<LocalSingle> {
    if ('upload' in ref) {
      return { file: this.upload(ref.upload, `${field}.upload`) };
    }
    const known = this.linked.get(ref.recording);
    if (known) {
      return { file: known };
    }
    const { file, bytes } = await this.inputs.linkRecording(
      this.principal,
      ref.recording,
      `${field}.recording`,
      this.jobDir,
    );
    this.linked.set(ref.recording, file);
    this.bytes += bytes;
    return { file };
  }

  async images(ref: ImagesRef, field: string): Promise<PlanImages> {
    if ('uploads' in ref) {
      return {
        files: ref.uploads.map((name, i) => this.upload(name, `${field}.uploads.${i}`)),
        durationsMs: ref.durationsMs,
      };
    }
    const { images, bytes } = await this.inputs.linkSessionFrames(
      this.principal,
      ref.sessionFrames,
      `${field}.sessionFrames`,
      this.jobDir,
    );
    this.bytes += bytes;
    return images;
  }

  private upload(name: string, field: string): string {
    const file = this.uploads.get(name);
    if (!file) {
      throw invalid([
        {
          field,
          problem: `no file part named "${name}" (send it as a part of a multipart/form-data body)`,
        },
      ]);
    }
    if (!this.usedUploads.has(name)) {
      this.usedUploads.add(name);
      this.bytes += file.bytes;
    }
    return file.file;
  }
}

/** Hard-links a stored file into the job's folder (copies it across file systems); its size. */
async function linkInto(source: string, target: string, gone: () => AppError): Promise<number> {
  try {
    await link(source, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw gone();
    }
    if (code !== 'EXDEV' && code !== 'EPERM') {
      throw err;
    }
    await copyFile(source, target);
  }
  return (await stat(target)).size;
}

function invalid(fields: Array<{ field: string; problem: string }>): AppError {
  return new AppError(
    ErrorCode.ValidationFailed,
    `the job spec is invalid: ${fields.map((f) => `${f.field}: ${f.problem}`).join('; ')}`,
    { fields },
  );
}

function conflict(field: string, message: string): AppError {
  return new AppError(ErrorCode.Conflict, `${field}: ${message}`);
}

function notReady(field: string, sessionId: string, recording: RecordingEntity | null): AppError {
  if (!recording) {
    return conflict(field, `session ${sessionId} has no recording yet`);
  }
  if (recording.status === 'failed') {
    return conflict(
      field,
      `the recording of session ${sessionId} failed: ${recording.failureReason ?? 'no reason recorded'}`,
    );
  }
  return conflict(
    field,
    `the recording of session ${sessionId} is not ready (${recording.status})`,
  );
}
