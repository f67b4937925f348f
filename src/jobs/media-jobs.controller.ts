import {
  Controller,
  Delete,
  Get,
  Head,
  HttpCode,
  Logger,
  Param,
  Post,
  Query,
  Req,
  Res,
} from '@nestjs/common';
import type { Request, Response } from 'express';
import { decodeCursor, type Page } from '../admin/admin-query';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { parseOrThrow } from '../common/zod-body.pipe';
import { ApiDoc, type ApiDocOptions } from '../docs/api-doc';
import { serveFile } from '../http/file-response';
import {
  jobListQuery,
  jobPageSchema,
  type JobSummary,
  type JobView,
  jobViewSchema,
  submissionSchema,
} from './jobs-api.schema';
import { MediaJobsService } from './media-jobs.service';

const RESULT_DOC: ApiDocOptions = {
  summary: "A completed job's output, with byte ranges and conditional requests",
  description:
    'Without a name: the primary output (the video, the audio, the sprite sheet, the first ' +
    "thumbnail); `/result/{name}` serves any output the job's record lists. `ETag` is the " +
    "output's sha256. 409 while the job is not completed or after retention removed its files.",
  headers: [
    { name: 'Range', description: 'One byte range, e.g. `bytes=0-1023`' },
    { name: 'If-None-Match', description: 'The ETag (sha256 of the output) of a cached copy' },
  ],
  responses: {
    200: { description: 'The whole output', contentType: 'application/octet-stream' },
    206: {
      description: 'The requested range (Content-Range)',
      contentType: 'application/octet-stream',
    },
    304: { description: 'Not modified' },
  },
  errors: [404, 409, 416, 429, 503],
};

/**
 * The media jobs API (`media:process`; reading and cancelling a job: its owner, or `admin`).
 * Thin: every route validates, calls one MediaJobsService method and maps the answer.
 */
@Controller('v1/media/jobs')
export class MediaJobsController {
  private readonly logger = new Logger('MediaJobsController');

  constructor(private readonly jobs: MediaJobsService) {}

  @Post()
  @HttpCode(202)
  @RequireScopes('media:process')
  @ApiDoc({
    summary: 'Submit a media job (queued; answered with its record)',
    description:
      'The body is the job spec as `application/json` (inputs are recordings, `{"recording": ' +
      '"<session id>"}`, or a session\'s stored frames, `{"sessionFrames": "<session id>"}`), or ' +
      '`multipart/form-data` with a `spec` field holding that JSON and one file part for each ' +
      '`{"upload": "<part name>"}` it names. Uploads are streamed to disk, at most ' +
      'MEDIA_UPLOAD_MAX_BYTES each and in all (a larger Content-Length is refused with 413 ' +
      "before anything is read). A recording must be the caller's (or the caller an admin) and " +
      'ready. `concat` also takes `{"type": "concat", "transactionId": "TX-1"}`: the recordings of ' +
      "the caller's sessions opened with that transactionId, in order. Optional `webhook`: " +
      'see docs/webhooks.md. The job types and their fields: docs/media-jobs.md.',
    body: submissionSchema,
    responses: { 202: jobViewSchema },
    errors: [400, 404, 408, 409, 413, 415, 429, 503],
  })
  submit(@CurrentPrincipal() principal: Principal, @Req() req: Request): Promise<JobView> {
    return this.jobs.submit(principal, req);
  }

  @Get()
  @RequireScopes('media:process', 'admin')
  @ApiDoc({
    summary: "The caller's media jobs, newest first",
    description: 'Keyset pages: pass `nextCursor` as `cursor`.',
    query: jobListQuery,
    responses: { 200: jobPageSchema },
    errors: [400, 429, 503],
  })
  list(
    @CurrentPrincipal() principal: Principal,
    @Query() query: Record<string, unknown>,
  ): Promise<Page<JobSummary>> {
    const q = parseOrThrow(jobListQuery, query, 'query');
    return this.jobs.list(principal, {
      state: q.state,
      limit: q.limit,
      cursor: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
    });
  }

  @Get(':id')
  @RequireScopes('media:process', 'admin')
  @ApiDoc({
    summary: 'A media job: state, progress, attempts, timing, error, outputs and events',
    responses: { 200: jobViewSchema },
    errors: [404, 429, 503],
  })
  get(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<JobView> {
    return this.jobs.view(principal, id);
  }

  @Delete(':id')
  @RequireScopes('media:process', 'admin')
  @ApiDoc({
    summary: 'Cancel a media job (final; a running ffmpeg is killed before the answer)',
    description: 'Cancelling a cancelled job again answers its record; a finished job is 409.',
    responses: { 200: jobViewSchema },
    errors: [404, 409, 429, 503],
  })
  cancel(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<JobView> {
    return this.jobs.cancel(principal, id);
  }

  // HEAD routes are declared before GET, whose Express route would otherwise also take them.
  @Head(':id/result')
  @RequireScopes('media:process', 'admin')
  @ApiDoc(RESULT_DOC)
  headResult(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.result(principal, id, undefined, req, res);
  }

  @Get(':id/result')
  @RequireScopes('media:process', 'admin')
  @ApiDoc(RESULT_DOC)
  getResult(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.result(principal, id, undefined, req, res);
  }

  @Head(':id/result/:name')
  @RequireScopes('media:process', 'admin')
  @ApiDoc(RESULT_DOC)
  headNamedResult(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Param('name') name: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.result(principal, id, name, req, res);
  }

  @Get(':id/result/:name')
  @RequireScopes('media:process', 'admin')
  @ApiDoc(RESULT_DOC)
  getNamedResult(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Param('name') name: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.result(principal, id, name, req, res);
  }

  private async result(
    principal: Principal,
    id: string,
    name: string | undefined,
    req: Request,
    res: Response,
  ): Promise<void> {
    const file = await this.jobs.output(principal, id, name);
    await serveFile(req, res, file, this.logger);
  }
}
