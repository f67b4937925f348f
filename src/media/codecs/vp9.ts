import type { VideoChunkCheck } from '../../stream/chunk-gate';
import { BitReader } from './bit-reader';

/** What `open` declared, and the channel's limits, for a `vp09.*` session. */
export interface Vp9CheckerOptions {
  /** `vp09.PP.LL.DD[...]`: profile, level, bit depth. */
  codec: string;
  width: number;
  height: number;
  maxWidth: number;
  maxHeight: number;
}

/** The levels of the VP9 codec string (VP9 codec ISO media file format binding, "Levels"). */
const LEVELS: readonly number[] = [10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 52, 60, 61, 62];
const SYNC_CODE = 0x498342;
const CS_RGB = 7;

/**
 * The checker of a `vp09.*` session's chunks. Throws when the codec string is not one (profile
 * 0-3, a defined level, bit depth 8 for profiles 0 and 1, 10 or 12 for 2 and 3) or the declared
 * size is over the limit; key frames may change the size within the limit.
 */
export function createVp9Checker(options: Vp9CheckerOptions): VideoChunkCheck {
  const match = /^vp09\.(\d\d)\.(\d\d)\.(\d\d)(\.\d\d){0,5}$/.exec(options.codec);
  if (!match) {
    throw new Error(`codec ${options.codec} is not vp09.PP.LL.DD`);
  }
  const profile = Number(match[1]);
  const level = Number(match[2]);
  const bitDepth = Number(match[3]);
  if (profile > 3) {
    throw new Error(`codec ${options.codec}: VP9 profile ${profile} is not 0 to 3`);
  }
  if (!LEVELS.includes(level)) {
    throw new Error(`codec ${options.codec}: ${level} is not a VP9 level`);
  }
  const depths = profile < 2 ? [8] : [10, 12];
  if (!depths.includes(bitDepth)) {
    throw new Error(
      `codec ${options.codec}: VP9 profile ${profile} has bit depth ${depths.join(' or ')}, not ${bitDepth}`,
    );
  }
  if (options.width < 1 || options.height < 1) {
    throw new Error(`a VP9 size of ${options.width}x${options.height} is empty`);
  }
  if (options.width > options.maxWidth || options.height > options.maxHeight) {
    throw new Error(
      `${options.width}x${options.height} is over the limit of ${options.maxWidth}x${options.maxHeight}`,
    );
  }
  return new Vp9ChunkChecker(profile, bitDepth, options.maxWidth, options.maxHeight);
}

/** Why a chunk is refused; the numbers its reason names are in the checker's problem fields. */
type Vp9Problem =
  | 'empty'
  | 'zero-size'
  | 'index-sum'
  | 'frame-marker'
  | 'profile-reserved'
  | 'profile'
  | 'cut'
  | 'sync-code'
  | 'bit-depth'
  | 'colour-reserved'
  | 'subsampling'
  | 'rgb'
  | 'over-limit'
  | 'shows-none'
  | 'shows-many'
  | 'flagged-without-key'
  | 'unflagged-key';

/**
 * One chunk: a frame, or a superframe (VP9 bitstream spec Annex B: frames back to back, then an
 * index whose marker byte 110xxxxx ends it and repeats at its start, sizes little-endian; the
 * sizes and the index must make up the chunk). Each frame's uncompressed header (§6.2):
 * frame_marker 2, the profile and bit depth of the codec string, the reserved bits 0, the sync
 * code 49 83 42 on key and intra-only frames, colour config allowed for the profile, and any
 * frame size it states within the limit. Exactly one frame of a chunk is shown (libvpx packs a
 * hidden alt-ref frame with the frame that shows it), and the key flag is set exactly when a
 * frame is a key frame (intra-only frames are not: they do not reset the references). As in the
 * H.264 checker, the scan finds the problem and `reason` alone writes sentences.
 */
class Vp9ChunkChecker implements VideoChunkCheck {
  private readonly reader = new BitReader();
  /** Per chunk: shown frames, and whether one was a key frame. */
  private shown = 0;
  private sawKey = false;
  /** The superframe's frame being read (1-based; 0 for a chunk of one frame) and its count. */
  private frame = 0;
  private frames = 0;
  private problemA = 0;
  private problemB = 0;

  constructor(
    private readonly profile: number,
    private readonly bitDepth: number,
    private readonly maxWidth: number,
    private readonly maxHeight: number,
  ) {}

  check(chunk: Buffer, key: boolean): string | null {
    const problem = this.scan(chunk, key);
    return problem === null ? null : this.reason(problem);
  }

  private scan(chunk: Buffer, key: boolean): Vp9Problem | null {
    const n = chunk.length;
    if (n === 0) {
      return 'empty';
    }
    this.shown = 0;
    this.sawKey = false;
    this.frame = 0;
    const marker = chunk[n - 1];
    const frames = (marker & 7) + 1;
    const sizeBytes = ((marker >> 3) & 3) + 1;
    const indexBytes = 2 + sizeBytes * frames;
    // A frame may end in a byte that looks like a marker: it is an index only if repeated.
    const problem =
      (marker & 0xe0) === 0xc0 && n >= indexBytes && chunk[n - indexBytes] === marker
        ? this.scanSuperframe(chunk, n - indexBytes, frames, sizeBytes)
        : this.scanFrame(chunk, 0, n);
    if (problem !== null) {
      return problem;
    }
    this.frame = 0;
    if (this.shown !== 1) {
      return this.shown === 0 ? 'shows-none' : this.found('shows-many', this.shown, 0);
    }
    if (key !== this.sawKey) {
      return key ? 'flagged-without-key' : 'unflagged-key';
    }
    return null;
  }

  private scanSuperframe(
    chunk: Buffer,
    indexAt: number,
    frames: number,
    sizeBytes: number,
  ): Vp9Problem | null {
    this.frames = frames;
    let total = 0;
    for (let i = 0; i < frames; i++) {
      const size = this.frameSize(chunk, indexAt + 1 + i * sizeBytes, sizeBytes);
      if (size === 0) {
        this.frame = i + 1;
        return 'zero-size';
      }
      total += size;
    }
    if (total !== indexAt) {
      return this.found('index-sum', total, indexAt);
    }
    let at = 0;
    for (let i = 0; i < frames; i++) {
      const size = this.frameSize(chunk, indexAt + 1 + i * sizeBytes, sizeBytes);
      this.frame = i + 1;
      const problem = this.scanFrame(chunk, at, at + size);
      if (problem !== null) {
        return problem;
      }
      at += size;
    }
    return null;
  }

  private frameSize(chunk: Buffer, at: number, sizeBytes: number): number {
    let size = 0;
    for (let b = sizeBytes - 1; b >= 0; b--) {
      size = size * 256 + chunk[at + b];
    }
    return size;
  }

  /** uncompressed_header() of §6.2, up to the frame size. */
  private scanFrame(chunk: Buffer, start: number, end: number): Vp9Problem | null {
    const r = this.reader.reset(chunk, start, end);
    const frameMarker = r.bits(2);
    if (frameMarker !== 2) {
      return this.found('frame-marker', frameMarker, 0);
    }
    const profile = r.bit() | (r.bit() << 1);
    if (profile === 3 && r.bit() !== 0) {
      return 'profile-reserved';
    }
    if (profile !== this.profile) {
      return this.found('profile', profile, 0);
    }
    if (r.bit() === 1) {
      // show_existing_frame: frame_to_show_map_idx, and nothing else.
      r.skip(3);
      this.shown++;
      return r.overrun ? 'cut' : null;
    }
    const isKey = r.bit() === 0;
    const shown = r.bit();
    const errorResilient = r.bit();
    let problem: Vp9Problem | null = null;
    if (isKey) {
      problem = this.syncCode(r) ?? this.colorConfig(r) ?? this.frameSizeWithin(r);
      this.sawKey = true;
    } else {
      const intraOnly = shown === 0 ? r.bit() : 0;
      if (errorResilient === 0) {
        r.skip(2); // reset_frame_context
      }
      if (intraOnly === 1) {
        problem = this.syncCode(r);
        if (problem === null && this.profile > 0) {
          problem = this.colorConfig(r);
        }
        r.skip(8); // refresh_frame_flags
        problem ??= this.frameSizeWithin(r);
      } else {
        r.skip(8); // refresh_frame_flags
        r.skip(3 * 4); // ref_frame_idx and ref_frame_sign_bias, three times
        let foundRef = 0;
        for (let i = 0; i < 3 && foundRef === 0; i++) {
          foundRef = r.bit();
        }
        if (foundRef === 0) {
          problem = this.frameSizeWithin(r);
        }
      }
    }
    if (r.overrun) {
      return 'cut';
    }
    this.shown += shown;
    return problem;
  }

  private syncCode(r: BitReader): Vp9Problem | null {
    return r.bits(24) === SYNC_CODE || r.overrun ? null : 'sync-code';
  }

  /** color_config() of §6.2.2, against the codec string's bit depth and profile. */
  private colorConfig(r: BitReader): Vp9Problem | null {
    const bitDepth = this.profile >= 2 ? (r.bit() === 1 ? 12 : 10) : 8;
    if (bitDepth !== this.bitDepth && !r.overrun) {
      return this.found('bit-depth', bitDepth, 0);
    }
    const nonZeroSubsampling = this.profile === 1 || this.profile === 3;
    if (r.bits(3) !== CS_RGB) {
      r.skip(1); // color_range
      if (nonZeroSubsampling) {
        const subsampling = r.bits(2);
        if (r.bit() !== 0) {
          return 'colour-reserved';
        }
        if (subsampling === 3) {
          return 'subsampling';
        }
      }
    } else if (!nonZeroSubsampling) {
      return 'rgb';
    } else if (r.bit() !== 0) {
      return 'colour-reserved';
    }
    return null;
  }

  /** frame_size() of §6.2.5, against the channel's limit. */
  private frameSizeWithin(r: BitReader): Vp9Problem | null {
    const width = r.bits(16) + 1;
    const height = r.bits(16) + 1;
    if (r.overrun || (width <= this.maxWidth && height <= this.maxHeight)) {
      return null;
    }
    return this.found('over-limit', width, height);
  }

  private found(problem: Vp9Problem, a: number, b: number): Vp9Problem {
    this.problemA = a;
    this.problemB = b;
    return problem;
  }

  /** The sentence, naming the superframe's frame when the problem is in one. */
  private reason(problem: Vp9Problem): string {
    const sentence = this.sentence(problem);
    return this.frame === 0 || problem === 'zero-size'
      ? sentence
      : `VP9 superframe frame ${this.frame} of ${this.frames}: ${sentence}`;
  }

  private sentence(problem: Vp9Problem): string {
    const a = this.problemA;
    const b = this.problemB;
    switch (problem) {
      case 'empty':
        return 'empty chunk';
      case 'zero-size':
        return `VP9 superframe frame ${this.frame} of ${this.frames} has size 0`;
      case 'index-sum':
        return `VP9 superframe index sizes sum to ${a} bytes, but its frames take ${b}`;
      case 'frame-marker':
        return `VP9 frame_marker ${a}, not 2`;
      case 'profile-reserved':
        return 'VP9 profile 3 with its reserved bit set';
      case 'profile':
        return `a VP9 frame of profile ${a}, but the codec string says ${this.profile}`;
      case 'cut':
        return 'the VP9 frame header is cut short';
      case 'sync-code':
        return 'the VP9 frame lacks its sync code 49 83 42';
      case 'bit-depth':
        return `a VP9 frame of bit depth ${a}, but the codec string says ${this.bitDepth}`;
      case 'colour-reserved':
        return 'a VP9 colour config with its reserved bit set';
      case 'subsampling':
        return `4:2:0 is not coded in VP9 profile ${this.profile} (profiles 1 and 3 are not 4:2:0)`;
      case 'rgb':
        return `RGB is not coded in VP9 profile ${this.profile} (profiles 0 and 2 are 4:2:0)`;
      case 'over-limit':
        return `a VP9 frame of ${a}x${b} is over the limit of ${this.maxWidth}x${this.maxHeight}`;
      case 'shows-none':
        return 'the chunk shows no frame: a hidden VP9 frame comes in a superframe with the one shown';
      case 'shows-many':
        return `the chunk shows ${a} VP9 frames: a chunk is one displayed frame`;
      case 'flagged-without-key':
        return 'flagged key, but the chunk holds no VP9 key frame';
      case 'unflagged-key':
        return 'the chunk holds a VP9 key frame but is not flagged key';
    }
  }
}
