import busboy from 'busboy';
import { createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { BodyReader } from '../http/body-reader';
import { IN_DIR } from './job-paths';
import { partName } from './jobs-api.schema';

/** The field of a multipart submission that carries the job spec (as JSON). */
export const SPEC_FIELD = 'spec';

export interface UploadLimits {
  /** Bytes of each file part, and of the whole body (Content-Length over it: 413 before reading). */
  maxBytes: number;
  /** Bytes of the `spec` field. */
  maxSpecBytes: number;
  /** File parts in one body. */
  maxFiles: number;
  /** Silence within the body after which it is answered 408. */
  idleMs: number;
}

/**
 * Checks the spec as soon as it arrives (throws the AppError to answer): a spec sent before the
 * files is refused before they are read.
 */
export type SpecCheck = (text: string) => void;

/** One uploaded file part, stored in the job's folder. */
export interface UploadedFile {
  /** Path relative to the job's folder, e.g. `in/u-clip.mp4`. */
  file: string;
  bytes: number;
}

export interface ReceivedUpload {
  /** The `spec` field's text (JSON, not yet parsed). */
  specText: string;
  /** By part name. */
  files: Map<string, UploadedFile>;
}

/** File name of an uploaded part inside the job's folder: the part name is one safe segment. */
export function uploadFile(name: string): string {
  return `${IN_DIR}/u-${name}`;
}

/**
 * Receives a `multipart/form-data` job submission: one `spec` field (the job spec as JSON; a
 * file part named `spec` is read as that field too, which is what `curl -F spec=@job.json` sends)
 * and file parts, each streamed to `jobDir/in/u-<part name>` as it arrives. Never buffered whole:
 * the body is pulled chunk by chunk (BodyReader: its limits, idle timeout and Content-Length check
 * before any byte), written to the parser only when it has taken the previous chunk, and the
 * parser waits for each file's disk write (backpressure end to end).
 *
 * Limits: each file and the whole body at most `maxBytes` (413), at most `maxFiles` parts. The
 * spec is checked when it arrives, so one that comes first and is refused stops the upload.
 * Rejects with the AppError to answer; the caller removes the folder on any failure.
 */
export async function receiveMultipart(
  req: IncomingMessage,
  jobDir: string,
  limits: UploadLimits,
  checkSpec: SpecCheck,
): Promise<ReceivedUpload> {
  const reader = new BodyReader(req, { maxBytes: limits.maxBytes, idleMs: limits.idleMs });
  return new MultipartReceiver(req, jobDir, limits, checkSpec).receive(reader);
}

class MultipartReceiver {
  private failure: AppError | null = null;
  /** Called by `fail`: wakes a feed loop waiting for the parser to drain. */
  private wake: (() => void) | null = null;
  private specText: string | null = null;
  private readonly files = new Map<string, UploadedFile>();
  private readonly writes: Array<Promise<void>> = [];
  private readonly streams = new Set<busboy.FileStream>();

  constructor(
    private readonly req: IncomingMessage,
    private readonly jobDir: string,
    private readonly limits: UploadLimits,
    private readonly checkSpec: SpecCheck,
  ) {}

  async receive(reader: BodyReader): Promise<ReceivedUpload> {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: this.req.headers,
        limits: {
          fileSize: this.limits.maxBytes,
          files: this.limits.maxFiles,
          fields: 1,
          fieldSize: this.limits.maxSpecBytes,
          parts: this.limits.maxFiles + 1,
          fieldNameSize: 200,
          headerPairs: 20,
        },
      });
    } catch {
      throw new AppError(
        ErrorCode.BadRequest,
        'multipart/form-data needs a boundary parameter in its Content-Type',
      );
    }
    this.listen(parser);
    const parsed = new Promise<void>((resolve) => {
      parser.once('close', resolve);
      // `on`, not `once`: destroying the parser after a failure may emit a second error.
      parser.on('error', (err: Error) => {
        this.fail(
          new AppError(ErrorCode.BadRequest, `the multipart body is malformed: ${err.message}`),
        );
        resolve();
      });
    });
    try {
      await this.feed(reader, parser);
    } catch (err) {
      this.fail(err instanceof AppError ? err : storageError(err));
    }
    const early = this.failed();
    if (early) {
      parser.destroy();
      for (const stream of this.streams) {
        stream.destroy();
      }
      await Promise.allSettled(this.writes);
      throw early;
    }
    parser.end();
    await parsed;
    await Promise.all(this.writes);
    const late = this.failed();
    if (late) {
      throw late;
    }
    if (this.specText === null) {
      throw new AppError(
        ErrorCode.ValidationFailed,
        `the multipart body has no "${SPEC_FIELD}" field (the job spec as JSON)`,
        { fields: [{ field: SPEC_FIELD, problem: 'required' }] },
      );
    }
    for (const entry of this.files.values()) {
      entry.bytes = (await stat(join(this.jobDir, entry.file))).size;
    }
    return { specText: this.specText, files: this.files };
  }

  /** Pulls the body and writes it to the parser, one chunk at a time. */
  private async feed(reader: BodyReader, parser: busboy.Busboy): Promise<void> {
    for (let chunk = await reader.next(); chunk !== null; chunk = await reader.next()) {
      if (this.failure) {
        return;
      }
      if (!parser.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            parser.off('drain', done);
            this.wake = null;
            resolve();
          };
          parser.on('drain', done);
          this.wake = done;
        });
      }
      if (this.failure) {
        return;
      }
    }
  }

  private listen(parser: busboy.Busboy): void {
    parser.on('field', (name, value, info) => {
      if (name !== SPEC_FIELD) {
        this.fail(unexpectedField(name));
      } else if (info.valueTruncated) {
        this.fail(specTooLarge(this.limits.maxSpecBytes));
      } else {
        this.setSpec(value);
      }
    });
    parser.on('file', (name, stream) => {
      if (this.failure) {
        discard(stream);
        return;
      }
      if (name === SPEC_FIELD) {
        this.readSpecFile(stream);
        return;
      }
      this.storeFile(name, stream);
    });
    parser.on('filesLimit', () =>
      this.fail(
        new AppError(
          ErrorCode.PayloadTooLarge,
          `a submission has at most ${this.limits.maxFiles} file parts`,
        ),
      ),
    );
    parser.on('fieldsLimit', () => this.fail(unexpectedField('(a second field)')));
    parser.on('partsLimit', () =>
      this.fail(
        new AppError(
          ErrorCode.PayloadTooLarge,
          `a submission has at most ${this.limits.maxFiles + 1} parts`,
        ),
      ),
    );
  }

  private storeFile(name: string, stream: busboy.FileStream): void {
    const valid = partName.safeParse(name);
    if (!valid.success) {
      discard(stream);
      this.fail(
        new AppError(
          ErrorCode.ValidationFailed,
          `file part "${name}": ${valid.error.issues[0]?.message}`,
          {
            fields: [{ field: name, problem: valid.error.issues[0]?.message ?? 'bad part name' }],
          },
        ),
      );
      return;
    }
    if (this.files.has(name)) {
      discard(stream);
      this.fail(
        new AppError(ErrorCode.ValidationFailed, `file part "${name}" is given twice`, {
          fields: [{ field: name, problem: 'given twice' }],
        }),
      );
      return;
    }
    const file = uploadFile(name);
    this.files.set(name, { file, bytes: 0 });
    this.streams.add(stream);
    stream.once('limit', () =>
      this.fail(
        new AppError(
          ErrorCode.PayloadTooLarge,
          `the upload "${name}" is larger than the limit of ${this.limits.maxBytes} bytes`,
        ),
      ),
    );
    // `wx`: a name is written once; the folder is the job's own, fresh.
    const write = pipeline(stream, createWriteStream(join(this.jobDir, file), { flags: 'wx' }))
      .catch((err: unknown) => {
        if (!this.failure) {
          this.fail(storageError(err));
        }
      })
      .finally(() => this.streams.delete(stream));
    this.writes.push(write);
  }

  /** A `spec` sent as a file part (`curl -F spec=@job.json`): read into memory, bounded. */
  private readSpecFile(stream: busboy.FileStream): void {
    const chunks: Buffer[] = [];
    let bytes = 0;
    this.streams.add(stream);
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > this.limits.maxSpecBytes) {
        this.fail(specTooLarge(this.limits.maxSpecBytes));
        stream.destroy();
        return;
      }
      chunks.push(chunk);
    });
    this.writes.push(
      new Promise<void>((resolve) => {
        stream.once('close', () => {
          this.streams.delete(stream);
          if (!this.failure) {
            this.setSpec(Buffer.concat(chunks).toString('utf8'));
          }
          resolve();
        });
      }),
    );
  }

  private setSpec(text: string): void {
    if (this.specText !== null) {
      this.fail(
        new AppError(ErrorCode.ValidationFailed, `the "${SPEC_FIELD}" field is given twice`, {
          fields: [{ field: SPEC_FIELD, problem: 'given twice' }],
        }),
      );
      return;
    }
    this.specText = text;
    try {
      this.checkSpec(text);
    } catch (err) {
      this.fail(err instanceof AppError ? err : storageError(err));
    }
  }

  /** The first failure, set by the parser's and the writes' callbacks at any await. */
  private failed(): AppError | null {
    return this.failure;
  }

  private fail(error: AppError): void {
    this.failure ??= error;
    this.wake?.();
  }
}

/**
 * Drains a part that is refused. Its errors are of no interest (the refusal is the answer), but
 * it needs a listener: destroying the parser after a failure destroys the part with an error.
 */
function discard(stream: busboy.FileStream): void {
  stream.on('error', () => undefined);
  stream.resume();
}

function unexpectedField(name: string): AppError {
  return new AppError(
    ErrorCode.ValidationFailed,
    `unexpected field "${name}": a submission has one "${SPEC_FIELD}" field (the job spec as JSON) and file parts`,
    { fields: [{ field: name, problem: 'unknown field' }] },
  );
}

function specTooLarge(maxBytes: number): AppError {
  return new AppError(
    ErrorCode.PayloadTooLarge,
    `the "${SPEC_FIELD}" field is larger than the limit of ${maxBytes} bytes`,
  );
}

/** A disk that is full is the node's state, not the caller's fault: 503, retry elsewhere or later. */
function storageError(err: unknown): AppError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new AppError(
      ErrorCode.InsufficientStorage,
      'this node has no room for the upload; retry later',
      { retryAfterS: 60 },
    );
  }
  const error = new AppError(ErrorCode.Internal, 'the upload could not be stored');
  error.cause = err;
  return error;
}
