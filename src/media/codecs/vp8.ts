import type { VideoChunkCheck } from '../../stream/chunk-gate';

/** The declared size and the channel's limits of a `vp8` session. */
export interface Vp8CheckerOptions {
  width: number;
  height: number;
  maxWidth: number;
  maxHeight: number;
}

/** Frame tag (3 bytes), then on key frames the start code and the size (7 bytes): RFC 6386 §9.1. */
const FRAME_TAG_BYTES = 3;
const KEY_HEADER_BYTES = 10;
/** Versions 0-3 are defined (RFC 6386 §9.1); no encoder writes others. */
const MAX_VERSION = 3;

/**
 * The checker of a `vp8` session's chunks. Throws when the declared size is empty or over the
 * limit; a key frame may then change the size within the limit (the SDK lowers it under `flow`).
 */
export function createVp8Checker(options: Vp8CheckerOptions): VideoChunkCheck {
  if (options.width < 1 || options.height < 1) {
    throw new Error(`a VP8 size of ${options.width}x${options.height} is empty`);
  }
  if (options.width > options.maxWidth || options.height > options.maxHeight) {
    throw new Error(
      `${options.width}x${options.height} is over the limit of ${options.maxWidth}x${options.maxHeight}`,
    );
  }
  return new Vp8ChunkChecker(options.maxWidth, options.maxHeight);
}

/** Why a chunk is refused; the numbers its reason names are in the checker's problem fields. */
type Vp8Problem =
  | 'short'
  | 'key-short'
  | 'flagged-inter'
  | 'unflagged-key'
  | 'version'
  | 'hidden'
  | 'first-partition'
  | 'start-code'
  | 'empty-size'
  | 'over-limit';

/**
 * RFC 6386 §9.1 and §19.1 on one frame: the frame tag's key bit (0 = key) equals the key flag,
 * the version is defined, the frame is shown (WebCodecs gives one chunk per displayed frame, and
 * VP8, unlike VP9, cannot pack a hidden frame with the one that shows it), the first partition
 * fits in the chunk; a key frame has the start code 9d 01 2a and a size within the limit (the
 * 2-bit scales are an upscaling hint, not part of the coded size). As in the H.264 checker,
 * `scan` finds the problem and `reason` alone writes sentences.
 */
class Vp8ChunkChecker implements VideoChunkCheck {
  private problemA = 0;
  private problemB = 0;

  constructor(
    private readonly maxWidth: number,
    private readonly maxHeight: number,
  ) {}

  check(chunk: Buffer, key: boolean): string | null {
    const problem = this.scan(chunk, key);
    return problem === null ? null : this.reason(problem, chunk.length);
  }

  private scan(chunk: Buffer, key: boolean): Vp8Problem | null {
    const n = chunk.length;
    if (n < FRAME_TAG_BYTES) {
      return 'short';
    }
    const tag = chunk[0] | (chunk[1] << 8) | (chunk[2] << 16);
    const isKey = (tag & 1) === 0;
    const version = (tag >> 1) & 7;
    const shown = (tag >> 4) & 1;
    const firstPartition = tag >>> 5;
    if (isKey !== key) {
      return key ? 'flagged-inter' : 'unflagged-key';
    }
    if (version > MAX_VERSION) {
      return this.found('version', version, 0);
    }
    if (shown === 0) {
      return 'hidden';
    }
    const headerBytes = isKey ? KEY_HEADER_BYTES : FRAME_TAG_BYTES;
    if (n < headerBytes) {
      return 'key-short';
    }
    if (firstPartition === 0 || firstPartition > n - headerBytes) {
      return this.found('first-partition', firstPartition, 0);
    }
    if (!isKey) {
      return null;
    }
    if (chunk[3] !== 0x9d || chunk[4] !== 0x01 || chunk[5] !== 0x2a) {
      return 'start-code';
    }
    const width = (chunk[6] | (chunk[7] << 8)) & 0x3fff;
    const height = (chunk[8] | (chunk[9] << 8)) & 0x3fff;
    if (width === 0 || height === 0) {
      return this.found('empty-size', width, height);
    }
    if (width > this.maxWidth || height > this.maxHeight) {
      return this.found('over-limit', width, height);
    }
    return null;
  }

  private found(problem: Vp8Problem, a: number, b: number): Vp8Problem {
    this.problemA = a;
    this.problemB = b;
    return problem;
  }

  private reason(problem: Vp8Problem, n: number): string {
    const a = this.problemA;
    const b = this.problemB;
    switch (problem) {
      case 'short':
        return `a VP8 frame has at least ${FRAME_TAG_BYTES} bytes; the chunk has ${n}`;
      case 'key-short':
        return `a VP8 key frame has at least ${KEY_HEADER_BYTES} bytes; the chunk has ${n}`;
      case 'flagged-inter':
        return 'flagged key, but the chunk is a VP8 inter frame';
      case 'unflagged-key':
        return 'the chunk is a VP8 key frame but is not flagged key';
      case 'version':
        return `VP8 version ${a} is not defined (0 to ${MAX_VERSION})`;
      case 'hidden':
        return 'the VP8 frame is not shown (show_frame 0): a chunk is one displayed frame';
      case 'first-partition':
        return `VP8 first partition size ${a} does not fit the chunk (${n} bytes)`;
      case 'start-code':
        return 'the VP8 key frame lacks its start code 9d 01 2a';
      case 'empty-size':
        return `a VP8 key frame of ${a}x${b}`;
      case 'over-limit':
        return (
          `a VP8 key frame of ${a}x${b} is over the limit of ` +
          `${this.maxWidth}x${this.maxHeight}`
        );
    }
  }
}
