import type { Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { parseRange } from '../media/byte-range';

/** A file that never changes once served (a ready recording, a job's output). */
export interface StoredFile {
  path: string;
  contentType: string;
  /** Content-Disposition file name. */
  filename: string;
  /** Strong validator: the file's sha256 (hex), or null when unknown. */
  sha256: string | null;
  lastModified: Date | null;
  /** Names the file in error messages, e.g. "the recording". */
  what: string;
}

/** A stored object read through a callback (S3-compatible storage), served like a file. */
export interface StoredObject extends Omit<StoredFile, 'path'> {
  size: number;
  /** Names the object in logs, e.g. its key. */
  where: string;
}

/** The validators of a stored file, as sent in `ETag` and `Last-Modified`. */
interface Validators {
  etag: string | null;
  lastModified: Date | null;
}

/**
 * Answers GET or HEAD with a stored file: single byte ranges (206, 416 with `Content-Range`),
 * conditional requests (If-None-Match, If-Modified-Since: 304; If-Range), the sha256 as a strong
 * ETag. The file is opened before any header is sent, so a file missing although its row says it
 * is there is a clean 500, logged once by the exception filter with its cause.
 */
export async function serveFile(
  req: Request,
  res: Response,
  file: StoredFile,
  logger: Logger,
): Promise<void> {
  const handle = await openFile(file);
  // From here on the handle is closed by the read stream, or below when no body is sent.
  let handedOver = false;
  try {
    const span = respond(req, res, {
      validators: {
        etag: file.sha256 ? `"${file.sha256}"` : null,
        lastModified: file.lastModified,
      },
      size: (await handle.stat()).size,
      contentType: file.contentType,
      filename: file.filename,
      what: file.what,
    });
    if (!span) {
      return;
    }
    handedOver = true;
    const source = createReadStream(file.path, { fd: handle, start: span.start, end: span.end });
    await stream(source, res, { what: file.what, where: file.path }, logger);
  } finally {
    if (!handedOver) {
      await handle.close();
    }
  }
}

/**
 * Answers GET or HEAD with a stored object by the same rules as a file: `open` is asked for the
 * byte span to send (null: all of it) only once the status is known, and its signal aborts when
 * the client goes away. An `open` that fails throws before any header is sent, so the caller's
 * error (a 503) is answered cleanly.
 */
export async function serveStream(
  req: Request,
  res: Response,
  object: StoredObject,
  open: (span: { start: number; end: number } | null, signal: AbortSignal) => Promise<Readable>,
  logger: Logger,
): Promise<void> {
  const span = respond(req, res, {
    validators: {
      etag: object.sha256 ? `"${object.sha256}"` : null,
      lastModified: object.lastModified,
    },
    size: object.size,
    contentType: object.contentType,
    filename: object.filename,
    what: object.what,
  });
  if (!span) {
    return;
  }
  const aborter = new AbortController();
  const abort = (): void => aborter.abort();
  res.once('close', abort);
  try {
    let source: Readable;
    try {
      const whole = span.start === 0 && span.end === object.size - 1;
      source = await open(whole ? null : span, aborter.signal);
    } catch (err) {
      if (aborter.signal.aborted) {
        // The client left while storage was asked: nobody to answer.
        return;
      }
      for (const name of [
        'Content-Type',
        'Content-Disposition',
        'Content-Length',
        'Content-Range',
      ]) {
        res.removeHeader(name);
      }
      throw err;
    }
    await stream(source, res, { what: object.what, where: object.where }, logger);
  } finally {
    res.off('close', abort);
  }
}

/**
 * Answers GET or HEAD with a small body made for the request (captions rendered from the
 * database), by the same rules as a stored file; its sha256 is the ETag.
 */
export function serveBuffer(
  req: Request,
  res: Response,
  body: Buffer,
  meta: { contentType: string; filename: string; lastModified: Date | null; what: string },
): void {
  const span = respond(req, res, {
    validators: {
      etag: `"${createHash('sha256').update(body).digest('hex')}"`,
      lastModified: meta.lastModified,
    },
    size: body.length,
    ...meta,
  });
  if (span) {
    res.end(body.subarray(span.start, span.end + 1));
  }
}

/** What a response serves: its validators, size and type; the caller then sends the body. */
interface Representation {
  validators: Validators;
  size: number;
  contentType: string;
  filename: string;
  what: string;
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
      `the requested range is outside ${rep.what} of ${size} bytes`,
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

async function openFile(file: StoredFile): Promise<FileHandle> {
  try {
    return await open(file.path, 'r');
  } catch (err) {
    const error = new AppError(ErrorCode.Internal, `${file.what} cannot be read`);
    error.cause = err;
    throw error;
  }
}

async function stream(
  source: Readable,
  res: Response,
  file: { what: string; where: string },
  logger: Logger,
): Promise<void> {
  try {
    await pipeline(source, res);
  } catch (err) {
    // A player that seeks or closes the tab aborts the response: routine, not an error.
    if (isPrematureClose(err)) {
      return;
    }
    if (!res.headersSent) {
      const error = new AppError(ErrorCode.Internal, `${file.what} cannot be read`);
      error.cause = err;
      throw error;
    }
    // Headers are out, so no error body can follow: cut the response short.
    logger.error({ err, path: file.where }, `streaming ${file.what} failed`);
    res.destroy();
  }
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
