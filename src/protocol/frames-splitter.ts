import { MEDIA_HEADER_BYTES } from './media-header';

/** Bytes of the length prefix before each message of an HTTP fallback body. */
export const FRAME_LENGTH_BYTES = 4;

/** Why an HTTP fallback body cannot be split further; `at` is the byte offset of the prefix. */
export type FramesProblem =
  | { kind: 'too_large'; at: number; maxBytes: number }
  | { kind: 'empty'; at: number }
  | { kind: 'truncated_prefix'; at: number }
  | { kind: 'truncated_message'; at: number };

/**
 * Splits an HTTP fallback body (spec section 6: `u32 length` + media message, repeated) as it
 * arrives, so the body is never held whole. A message wholly inside a chunk is handed over as a
 * view of that chunk (no copy); one spanning chunks is assembled in a buffer of its own, and the
 * length is checked against the limit before any of it is buffered.
 */
export class FramesSplitter {
  private readonly prefix = Buffer.alloc(FRAME_LENGTH_BYTES);
  private prefixFill = 0;
  private message: Buffer | null = null;
  private messageFill = 0;
  /** Offset in the body of the prefix being read or of the message being assembled. */
  private start = 0;
  private position = 0;

  constructor(private readonly maxMessageBytes: number) {}

  /**
   * Feeds the next chunk, calling `onMessage` with each complete message in order. Stops at the
   * first problem (returned) or as soon as `onMessage` returns false (then returns null).
   */
  push(chunk: Buffer, onMessage: (message: Buffer) => boolean): FramesProblem | null {
    let i = 0;
    while (i < chunk.length) {
      if (this.message === null) {
        let length: number;
        if (this.prefixFill === 0 && chunk.length - i >= FRAME_LENGTH_BYTES) {
          this.start = this.position;
          length = chunk.readUInt32BE(i);
          i += FRAME_LENGTH_BYTES;
          this.position += FRAME_LENGTH_BYTES;
        } else {
          if (this.prefixFill === 0) {
            this.start = this.position;
          }
          const n = Math.min(FRAME_LENGTH_BYTES - this.prefixFill, chunk.length - i);
          chunk.copy(this.prefix, this.prefixFill, i, i + n);
          this.prefixFill += n;
          i += n;
          this.position += n;
          if (this.prefixFill < FRAME_LENGTH_BYTES) {
            return null;
          }
          this.prefixFill = 0;
          length = this.prefix.readUInt32BE(0);
        }
        if (length > this.maxMessageBytes) {
          return { kind: 'too_large', at: this.start, maxBytes: this.maxMessageBytes };
        }
        if (length <= MEDIA_HEADER_BYTES) {
          return { kind: 'empty', at: this.start };
        }
        if (chunk.length - i >= length) {
          const message = chunk.subarray(i, i + length);
          i += length;
          this.position += length;
          if (!onMessage(message)) {
            return null;
          }
          continue;
        }
        this.message = Buffer.allocUnsafe(length);
        this.messageFill = 0;
      }
      const n = Math.min(this.message.length - this.messageFill, chunk.length - i);
      chunk.copy(this.message, this.messageFill, i, i + n);
      this.messageFill += n;
      i += n;
      this.position += n;
      if (this.messageFill === this.message.length) {
        const message = this.message;
        this.message = null;
        if (!onMessage(message)) {
          return null;
        }
      }
    }
    return null;
  }

  /** At the end of the body: a problem when it ended inside a prefix or a message. */
  end(): FramesProblem | null {
    if (this.prefixFill > 0) {
      return { kind: 'truncated_prefix', at: this.start };
    }
    if (this.message !== null) {
      return { kind: 'truncated_message', at: this.start };
    }
    return null;
  }
}
