import { Controller, Get, Head, Inject, Logger, Param, Req, Res } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Request, Response } from 'express';
import type { Repository } from 'typeorm';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { serveBuffer, serveFile, serveStream } from '../http/file-response';
import { SessionsService } from '../sessions/sessions.service';
import { RecordingStore } from '../storage/recording-store';
import { describeStorageError } from '../storage/upload-policy';
import { RecordingEntity } from './recording.entity';
import { RecordingService } from './recording.service';
import { renderWebVtt } from './webvtt';
import { ApiDoc, type ApiDocOptions } from '../docs/api-doc';

/** `GET`/`HEAD /v1/sessions/{id}/recording.vtt`: the same rules as the MP4, its text track's cues. */
const RECORDING_VTT_DOC: ApiDocOptions = {
  summary:
    "The session's messages as WebVTT captions, the same cues as the recording's text track (the sidecar of the MP4)",
  headers: [
    { name: 'Range', description: 'One byte range, e.g. `bytes=0-1023`' },
    { name: 'If-None-Match', description: 'The ETag (sha256 of the file) of a cached copy' },
  ],
  responses: {
    200: { description: 'The whole file', contentType: 'text/vtt' },
    206: { description: 'The requested range (Content-Range)', contentType: 'text/vtt' },
    304: { description: 'Not modified' },
  },
  errors: [404, 409, 416, 429, 503],
};

/** What a client told that storage is down should wait before asking again. */
const STORAGE_RETRY_AFTER_S = 10;

/**
 * `GET`/`HEAD /v1/sessions/{id}/recording`: the session's MP4, with single byte ranges and
 * conditional requests, for the owner (`recording:read`) or an admin. Anyone else gets the 404 of
 * a missing session.
 */
const RECORDING_DOC: ApiDocOptions = {
  summary: "The session's recording (MP4), with byte ranges and conditional requests",
  headers: [
    { name: 'Range', description: 'One byte range, e.g. `bytes=0-1023`' },
    { name: 'If-None-Match', description: 'The ETag (sha256 of the file) of a cached copy' },
  ],
  responses: {
    200: { description: 'The whole file', contentType: 'video/mp4' },
    206: { description: 'The requested range (Content-Range)', contentType: 'video/mp4' },
    302: {
      description:
        'With RECORDINGS_S3_REDIRECT=presigned, a recording on S3: a short-lived presigned URL in Location',
    },
    304: { description: 'Not modified' },
  },
  errors: [404, 409, 416, 429, 503],
};

@Controller('v1/sessions')
export class RecordingsController {
  private readonly logger = new Logger(RecordingsController.name);

  constructor(
    private readonly sessions: SessionsService,
    @InjectRepository(RecordingEntity) private readonly recordings: Repository<RecordingEntity>,
    private readonly recordingService: RecordingService,
    private readonly store: RecordingStore,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  @Head(':id/recording.vtt')
  @RequireScopes('recording:read', 'admin')
  @ApiDoc(RECORDING_VTT_DOC)
  headCaptions(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.serveCaptions(principal, id, req, res);
  }

  @Get(':id/recording.vtt')
  @RequireScopes('recording:read', 'admin')
  @ApiDoc(RECORDING_VTT_DOC)
  getCaptions(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.serveCaptions(principal, id, req, res);
  }

  // Declared before GET, whose Express route would otherwise also take HEAD requests.
  @Head(':id/recording')
  @RequireScopes('recording:read', 'admin')
  @ApiDoc(RECORDING_DOC)
  head(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.serve(principal, id, req, res);
  }

  @Get(':id/recording')
  @RequireScopes('recording:read', 'admin')
  @ApiDoc(RECORDING_DOC)
  get(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.serve(principal, id, req, res);
  }

  private async serve(
    principal: Principal,
    id: string,
    req: Request,
    res: Response,
  ): Promise<void> {
    const recording = await this.readyRecording(principal, id);
    if (recording.storage === 's3') {
      return this.serveObject(recording, req, res);
    }
    if (!recording.path) {
      const error = new AppError(ErrorCode.Internal, 'the recording file cannot be read');
      error.cause = new Error(`recording ${recording.id} is ready but has no path`);
      throw error;
    }
    try {
      await serveFile(
        req,
        res,
        {
          path: recording.path,
          contentType: 'video/mp4',
          filename: `${recording.sessionId}.mp4`,
          // Strong: the file's sha256 never changes once the recording is ready.
          sha256: recording.sha256,
          lastModified: recording.readyAt,
          what: 'the recording',
        },
        this.logger,
      );
    } catch (err) {
      // The upload may have moved the file between reading the row and opening it.
      const moved = isMissingFile(err)
        ? await this.recordings.findOneBy({ id: recording.id })
        : null;
      if (moved?.storage !== 's3') {
        throw err;
      }
      await this.serveObject(moved, req, res);
    }
  }

  /** A recording on S3: streamed with its range, or a redirect to a presigned URL. */
  private async serveObject(
    recording: RecordingEntity,
    req: Request,
    res: Response,
  ): Promise<void> {
    const key = recording.objectKey as string;
    const filename = `${recording.sessionId}.mp4`;
    if (this.config.RECORDINGS_S3_REDIRECT === 'presigned') {
      const url = await this.store
        .presign(key, filename, this.config.RECORDINGS_S3_PRESIGN_TTL_S)
        .catch((err: unknown) => {
          throw this.storageDown(recording, err);
        });
      res.setHeader('Cache-Control', 'no-store');
      res.redirect(302, url);
      return;
    }
    await serveStream(
      req,
      res,
      {
        size: recording.bytes ?? 0,
        contentType: 'video/mp4',
        filename,
        sha256: recording.sha256,
        lastModified: recording.readyAt,
        what: 'the recording',
        where: key,
      },
      (span, signal) =>
        this.store.read(key, span, signal).catch((err: unknown) => {
          throw this.storageDown(recording, err);
        }),
      this.logger,
    );
  }

  /** A storage failure as the 503 the client gets, logged once here. */
  private storageDown(recording: RecordingEntity, err: unknown): AppError {
    this.logger.warn(
      { recordingId: recording.id, key: recording.objectKey, error: describeStorageError(err) },
      'recording storage unavailable',
    );
    return new AppError(ErrorCode.Unavailable, 'the recording storage is unavailable', {
      retryAfterS: STORAGE_RETRY_AFTER_S,
    });
  }

  /**
   * The recording's captions: rendered from the stored messages on each request (a few kB, one
   * indexed query), so they are the cues the text track was written with, by construction.
   */
  private async serveCaptions(
    principal: Principal,
    id: string,
    req: Request,
    res: Response,
  ): Promise<void> {
    const recording = await this.readyRecording(principal, id);
    const cues = await this.recordingService.messageCues(recording.sessionId);
    serveBuffer(req, res, Buffer.from(renderWebVtt(cues), 'utf8'), {
      contentType: 'text/vtt; charset=utf-8',
      filename: `${recording.sessionId}.vtt`,
      lastModified: recording.readyAt,
      what: 'the captions',
    });
  }

  /** The recording row of a visible session, if it is ready; 404 or 409 otherwise. */
  private async readyRecording(principal: Principal, id: string): Promise<RecordingEntity> {
    const session = await this.sessions.findVisible(principal, id);
    const recording = await this.recordings.findOneBy({ sessionId: session.id });
    if (!recording) {
      throw new AppError(ErrorCode.NotFound, 'no recording for this session');
    }
    if (recording.status === 'failed') {
      throw new AppError(
        ErrorCode.Conflict,
        `the recording failed: ${recording.failureReason ?? 'no reason recorded'}`,
      );
    }
    if (recording.status !== 'ready') {
      throw new AppError(ErrorCode.Conflict, `the recording is not ready (${recording.status})`);
    }
    return recording;
  }
}

function isMissingFile(err: unknown): boolean {
  return (
    err instanceof AppError && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
  );
}
