import { Controller, Get, Head, Logger, Param, Req, Res } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Request, Response } from 'express';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Repository } from 'typeorm';
import { CurrentPrincipal, RequireScopes } from '../auth/auth.decorators';
import type { Principal } from '../auth/scopes';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { SessionsService } from '../sessions/sessions.service';
import { parseRange } from './byte-range';
import { RecordingEntity } from './recording.entity';
import { RecordingService } from './recording.service';
import { renderWebVtt } from './webvtt';
import { ApiDoc, type ApiDocOptions } from '../docs/api-doc';

/** The validators of a ready recording, as sent in `ETag` and `Last-Modified`. */
interface Validators {
  /** Strong: the file's sha256 never changes once the recording is ready. */
  etag: string | null;
  lastModified: Date | null;
}

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
    304: { description: 'Not modified' },
  },
  errors: [404, 409, 416, 429, 503],
};

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

/** What a response serves: its validators, size and type; the caller then sends the body. */
interface Representation {
  validators: Validators;
  size: number;
  contentType: string;
  filename: string;
}

@Controller('v1/sessions')
export class RecordingsController {
  private readonly logger = new Logger(RecordingsController.name);

  constructor(
    private readonly sessions: SessionsService,
    @InjectRepository(RecordingEntity) private readonly recordings: Repository<RecordingEntity>,
    private readonly recordingService: RecordingService,
  ) {}

  // Declared before GET, whose Express route would otherwise also take HEAD requests.
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
    const file = await this.openFile(recording);
    // From here on the handle is closed by the read stream, or below when no body is sent.
    let handedOver = false;
    try {
      const size = (await file.stat()).size;
      const span = respond(req, res, {
        validators: {
          etag: recording.sha256 ? `"${recording.sha256}"` : null,
          lastModified: recording.readyAt,
        },
        size,
        contentType: 'video/mp4',
        filename: `${recording.sessionId}.mp4`,
      });
      if (!span) {
        return;
      }
      const { start, end } = span;
      handedOver = true;
      const source = createReadStream(recording.path as string, { fd: file, start, end });
      await this.stream(source, res, recording.sessionId);
    } finally {
      if (!handedOver) {
        await file.close();
      }
    }
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
    const body = Buffer.from(renderWebVtt(cues), 'utf8');
    const span = respond(req, res, {
      validators: {
        etag: `"${createHash('sha256').update(body).digest('hex')}"`,
        lastModified: recording.readyAt,
      },
      size: body.length,
      contentType: 'text/vtt; charset=utf-8',
      filename: `${recording.sessionId}.vtt`,
    });
    if (span) {
      res.end(body.subarray(span.start, span.end + 1));
    }
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

  /**
   * Opens the file before any header is sent, so that a file missing although the row says ready
   * is a clean 500, logged once by the exception filter with its cause.
   */
  private async openFile(recording: RecordingEntity): Promise<FileHandle> {
    try {
      if (!recording.path) {
        throw new Error(`recording ${recording.id} is ready but has no path`);
      }
      return await open(recording.path, 'r');
    } catch (err) {
      const error = new AppError(ErrorCode.Internal, 'the recording file cannot be read');
      error.cause = err;
      throw error;
    }
  }

  private async stream(source: Readable, res: Response, sessionId: string): Promise<void> {
    try {
      await pipeline(source, res);
    } catch (err) {
      // A player that seeks or closes the tab aborts the response: routine, not an error.
      if (isPrematureClose(err)) {
        return;
      }
      if (!res.headersSent) {
        const error = new AppError(ErrorCode.Internal, 'the recording file cannot be read');
        error.cause = err;
        throw error;
      }
      // Headers are out, so no error body can follow: cut the response short.
      this.logger.error({ err, sessionId }, 'streaming a recording failed');
      res.destroy();
    }
  }
}

/**
 * Status and headers of a response to GET or HEAD: 304 when the client's copy is current, else
 * 200 or 206 with the byte span to send (null: nothing to send, the response is complete). An
 * unsatisfiable range throws 416 with the size in `Content-Range`.
 */
function respond(
  req: Request,
  res: Response,
  rep: Representation,
): { start: number; end: number } | null {
  const { validators, size } = rep;
  setValidatorHeaders(res, validators);
  res.setHeader('Accept-Ranges', 'bytes');
  if (notModified(req, validators)) {
    res.status(304).end();
    return null;
  }
  // Range is defined for GET only (RFC 9110 section 14.2); HEAD describes the whole file.
  const range =
    req.method === 'GET' && ifRangeMatches(req, validators)
      ? parseRange(req.headers.range, size)
      : parseRange(undefined, size);
  if (range.kind === 'unsatisfiable') {
    res.setHeader('Content-Range', `bytes */${size}`);
    throw new AppError(
      ErrorCode.RangeNotSatisfiable,
      `the requested range is outside the ${rep.filename} of ${size} bytes`,
    );
  }
  const [start, end] = range.kind === 'partial' ? [range.start, range.end] : [0, size - 1];
  res.setHeader('Content-Type', rep.contentType);
  res.setHeader('Content-Disposition', `inline; filename="${rep.filename}"`);
  res.setHeader('Content-Length', String(end - start + 1));
  if (range.kind === 'partial') {
    res.status(206).setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
  } else {
    res.status(200);
  }
  if (req.method === 'HEAD' || size === 0) {
    res.end();
    return null;
  }
  return { start, end };
}

function isPrematureClose(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ECONNRESET' || code === 'EPIPE';
}

function setValidatorHeaders(res: Response, v: Validators): void {
  res.setHeader('Cache-Control', 'private, max-age=0');
  if (v.etag) {
    res.setHeader('ETag', v.etag);
  }
  if (v.lastModified) {
    res.setHeader('Last-Modified', v.lastModified.toUTCString());
  }
}

/**
 * If-None-Match (weak comparison), else If-Modified-Since (RFC 9110 section 13.2.2); both only
 * ever answer GET and HEAD here, so a match is a 304.
 */
function notModified(req: Request, v: Validators): boolean {
  const inm = header(req, 'if-none-match');
  if (inm !== undefined) {
    if (inm.trim() === '*') {
      return true;
    }
    return v.etag !== null && entityTags(inm).some((t) => opaque(t) === opaque(v.etag as string));
  }
  const ims = header(req, 'if-modified-since');
  if (ims !== undefined && v.lastModified) {
    const since = Date.parse(ims);
    return !Number.isNaN(since) && wholeSeconds(v.lastModified) <= since;
  }
  return false;
}

/**
 * Whether a Range still applies: without If-Range always; with one, only if it names the current
 * representation (strong ETag comparison, or exactly the Last-Modified date). Otherwise the client
 * holds a different version and gets the whole file.
 */
function ifRangeMatches(req: Request, v: Validators): boolean {
  const value = header(req, 'if-range')?.trim();
  if (value === undefined || req.headers.range === undefined) {
    return true;
  }
  if (value.startsWith('"') || value.startsWith('W/')) {
    return v.etag !== null && value === v.etag;
  }
  const date = Date.parse(value);
  return !Number.isNaN(date) && v.lastModified !== null && wholeSeconds(v.lastModified) === date;
}

/** A request header as one string (Node keeps repeated unknown headers as an array). */
function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The entity-tags of an If-None-Match list, e.g. `"a", W/"b"`. */
function entityTags(header: string): string[] {
  return header.match(/(?:W\/)?"[^"]*"/g) ?? [];
}

function opaque(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag;
}

/** HTTP dates have whole seconds. */
function wholeSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000) * 1000;
}
