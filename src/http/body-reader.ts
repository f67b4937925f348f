import type { IncomingMessage } from 'node:http';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';

export interface BodyLimits {
  /** Bytes the body may have; beyond it 413, before reading when Content-Length says so. */
  maxBytes: number;
  /** Silence within the body after which it is answered 408. */
  idleMs: number;
}

/**
 * Reads a request body chunk by chunk, in paused mode: nothing is pulled off the socket until the
 * caller asks for it, so memory holds at most one chunk plus the stream's small buffer, and a
 * caller that stops asking stops the upload (TCP backpressure). It never destroys the request
 * itself, so the caller can still answer once it stops reading early.
 */
export class BodyReader {
  private received = 0;

  constructor(
    private readonly req: IncomingMessage,
    private readonly limits: BodyLimits,
  ) {
    const declared = Number(req.headers['content-length']);
    if (declared > limits.maxBytes) {
      throw tooLarge(limits.maxBytes);
    }
  }

  /** Bytes of body read so far. */
  get bytes(): number {
    return this.received;
  }

  /** The next chunk, or null at the end of the body. */
  async next(): Promise<Buffer | null> {
    const chunk = await this.nextChunk();
    if (chunk !== null) {
      this.received += chunk.length;
      if (this.received > this.limits.maxBytes) {
        throw tooLarge(this.limits.maxBytes);
      }
    }
    return chunk;
  }

  /** The whole body, for the small JSON bodies of REST routes. */
  async readAll(): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for (let chunk = await this.next(); chunk !== null; chunk = await this.next()) {
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  private nextChunk(): Promise<Buffer | null> {
    const req = this.req;
    const ready = req.read() as Buffer | null;
    if (ready !== null) {
      return Promise.resolve(ready);
    }
    if (req.readableEnded) {
      return Promise.resolve(null);
    }
    return new Promise((resolve, reject) => {
      const settle = (): void => {
        clearTimeout(timer);
        req.off('readable', onReadable);
        req.off('end', onEnd);
        req.off('close', onGone);
        req.off('error', onGone);
      };
      const onReadable = (): void => {
        const chunk = req.read() as Buffer | null;
        // null here means the end is next: 'end' follows.
        if (chunk !== null) {
          settle();
          resolve(chunk);
        }
      };
      const onEnd = (): void => {
        settle();
        resolve(null);
      };
      const onGone = (): void => {
        settle();
        reject(new AppError(ErrorCode.BadRequest, 'the request body was cut off'));
      };
      const timer = setTimeout(() => {
        settle();
        reject(
          new AppError(
            ErrorCode.RequestTimeout,
            `no byte of the request body for ${this.limits.idleMs} ms`,
          ),
        );
      }, this.limits.idleMs);
      req.on('readable', onReadable);
      req.on('end', onEnd);
      req.on('close', onGone);
      req.on('error', onGone);
    });
  }
}

function tooLarge(maxBytes: number): AppError {
  return new AppError(
    ErrorCode.PayloadTooLarge,
    `request body is larger than the limit of ${maxBytes} bytes`,
  );
}
