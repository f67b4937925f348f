import { NalType } from '../../protocol/annexb';
import type { VideoChunkCheck } from '../../stream/chunk-gate';
import { BitReader } from './bit-reader';

/** An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1), its parameter sets as views. */
export interface AvcDecoderConfig {
  profile: number;
  /** profile_compatibility: the SPS's constraint flags byte. */
  compat: number;
  level: number;
  /** Bytes before each NAL unit of a chunk: 1, 2 or 4. */
  lengthSize: number;
  sps: Uint8Array[];
  pps: Uint8Array[];
}

/** What a sequence parameter set says (ISO/IEC 14496-10 §7.3.2.1.1, §7.4.2.1.1). */
export interface SpsInfo {
  profileIdc: number;
  constraintFlags: number;
  levelIdc: number;
  spsId: number;
  chromaFormatIdc: number;
  bitDepthLuma: number;
  bitDepthChroma: number;
  frameMbsOnly: boolean;
  /** Size in macroblocks times 16, before cropping. */
  codedWidth: number;
  codedHeight: number;
  /** Size after frame cropping: what a decoder outputs. */
  width: number;
  height: number;
}

/** profile_idc values whose SPS carries chroma format, bit depths and scaling lists (§7.3.2.1.1). */
const HIGH_PROFILES: readonly number[] = [
  100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135,
];
const MAX_SPS_ID = 31;
const MAX_PPS_ID = 255;

/**
 * Reads an avcC. Throws an Error saying what is wrong: a version other than 1, a record cut
 * short, no SPS or PPS, a parameter set of the wrong type, 3-byte NAL unit lengths.
 */
export function parseAvcC(desc: Uint8Array): AvcDecoderConfig {
  if (desc.length < 7) {
    throw new Error(`the avcC has ${desc.length} bytes; it needs at least 7`);
  }
  if (desc[0] !== 1) {
    throw new Error(`avcC configurationVersion ${desc[0]} is not 1`);
  }
  const lengthSizeMinusOne = desc[4] & 3;
  if (lengthSizeMinusOne === 2) {
    // ISO/IEC 14496-15 allows 1, 2 and 4-byte lengths only.
    throw new Error('avcC lengthSizeMinusOne 2 (3-byte NAL unit lengths) is not allowed');
  }
  const sps: Uint8Array[] = [];
  const pps: Uint8Array[] = [];
  let at = readParameterSets(desc, 6, desc[5] & 0x1f, NalType.Sps, sps);
  if (at >= desc.length) {
    throw new Error('the avcC ends before its PPS count');
  }
  at = readParameterSets(desc, at + 1, desc[at], NalType.Pps, pps);
  if (sps.length === 0) {
    throw new Error('the avcC holds no SPS');
  }
  if (pps.length === 0) {
    throw new Error('the avcC holds no PPS');
  }
  // What may follow (chroma format, bit depths, SPS extensions) is not needed here.
  return {
    profile: desc[1],
    compat: desc[2],
    level: desc[3],
    lengthSize: lengthSizeMinusOne + 1,
    sps,
    pps,
  };
}

/** Reads `count` 16-bit-length-prefixed parameter sets from `at`; returns the offset after them. */
function readParameterSets(
  desc: Uint8Array,
  at: number,
  count: number,
  type: number,
  into: Uint8Array[],
): number {
  const name = type === NalType.Sps ? 'SPS' : 'PPS';
  for (let i = 0; i < count; i++) {
    if (at + 2 > desc.length) {
      throw new Error(`the avcC ends inside the length of ${name} ${i + 1} of ${count}`);
    }
    const n = (desc[at] << 8) | desc[at + 1];
    at += 2;
    if (n === 0 || at + n > desc.length) {
      throw new Error(
        `avcC ${name} ${i + 1} of ${count}: length ${n} with ${desc.length - at} bytes left`,
      );
    }
    const nal = desc.subarray(at, at + n);
    if ((nal[0] & 0x1f) !== type) {
      throw new Error(`avcC ${name} ${i + 1} of ${count} is a NAL unit of type ${nal[0] & 0x1f}`);
    }
    into.push(nal);
    at += n;
  }
  return at;
}

/**
 * Reads an SPS NAL unit up to its frame cropping (§7.3.2.1.1), skipping scaling lists, and
 * computes its output size (§7.4.2.1.1, frame_crop_*_offset with CropUnitX/Y). Throws on an SPS
 * cut short or with values out of their ranges.
 */
export function parseSps(nal: Uint8Array): SpsInfo {
  if (nal.length < 4 || (nal[0] & 0x1f) !== NalType.Sps) {
    throw new Error('not an SPS NAL unit');
  }
  const r = new BitReader().reset(nal, 1, nal.length, true);
  const profileIdc = r.bits(8);
  const constraintFlags = r.bits(8);
  const levelIdc = r.bits(8);
  const spsId = r.ue();
  let chromaFormatIdc = 1;
  let separateColourPlane = false;
  let bitDepthLuma = 8;
  let bitDepthChroma = 8;
  if (HIGH_PROFILES.includes(profileIdc)) {
    chromaFormatIdc = r.ue();
    if (chromaFormatIdc === 3) {
      separateColourPlane = r.bit() === 1;
    }
    bitDepthLuma = 8 + r.ue();
    bitDepthChroma = 8 + r.ue();
    r.skip(1); // qpprime_y_zero_transform_bypass_flag
    if (r.bit() === 1) {
      skipScalingLists(r, chromaFormatIdc === 3 ? 12 : 8);
    }
  }
  const log2MaxFrameNumMinus4 = r.ue();
  const pocType = r.ue();
  if (pocType === 0) {
    r.ue(); // log2_max_pic_order_cnt_lsb_minus4
  } else if (pocType === 1) {
    r.skip(1); // delta_pic_order_always_zero_flag
    r.se(); // offset_for_non_ref_pic
    r.se(); // offset_for_top_to_bottom_field
    const cycle = r.ue();
    if (cycle > 255) {
      throw new Error(`SPS num_ref_frames_in_pic_order_cnt_cycle ${cycle} is over 255`);
    }
    for (let i = 0; i < cycle && !r.overrun; i++) {
      r.se();
    }
  }
  r.ue(); // max_num_ref_frames
  r.skip(1); // gaps_in_frame_num_value_allowed_flag
  const widthInMbs = r.ue() + 1;
  const heightInMapUnits = r.ue() + 1;
  const frameMbsOnly = r.bit() === 1;
  if (!frameMbsOnly) {
    r.skip(1); // mb_adaptive_frame_field_flag
  }
  r.skip(1); // direct_8x8_inference_flag
  let crop = [0, 0, 0, 0];
  if (r.bit() === 1) {
    crop = [r.ue(), r.ue(), r.ue(), r.ue()];
  }
  if (r.overrun) {
    throw new Error('the SPS is cut short (or holds an Exp-Golomb code over 32 bits)');
  }
  if (spsId > MAX_SPS_ID) {
    throw new Error(`SPS seq_parameter_set_id ${spsId} is over ${MAX_SPS_ID}`);
  }
  if (chromaFormatIdc > 3 || bitDepthLuma > 14 || bitDepthChroma > 14) {
    throw new Error(
      `SPS chroma_format_idc ${chromaFormatIdc}, bit depths ${bitDepthLuma}/${bitDepthChroma}: out of range`,
    );
  }
  if (log2MaxFrameNumMinus4 > 12 || pocType > 2) {
    throw new Error(
      `SPS log2_max_frame_num_minus4 ${log2MaxFrameNumMinus4}, pic_order_cnt_type ${pocType}: out of range`,
    );
  }
  const codedWidth = widthInMbs * 16;
  const codedHeight = (frameMbsOnly ? 1 : 2) * heightInMapUnits * 16;
  // §7.4.2.1.1: crop units follow the chroma subsampling, and double in height for field coding.
  const chromaArrayType = separateColourPlane ? 0 : chromaFormatIdc;
  const cropUnitX = chromaArrayType === 1 || chromaArrayType === 2 ? 2 : 1;
  const cropUnitY = (chromaArrayType === 1 ? 2 : 1) * (frameMbsOnly ? 1 : 2);
  const width = codedWidth - cropUnitX * (crop[0] + crop[1]);
  const height = codedHeight - cropUnitY * (crop[2] + crop[3]);
  if (width <= 0 || height <= 0) {
    throw new Error(`SPS frame cropping leaves ${width}x${height} of ${codedWidth}x${codedHeight}`);
  }
  return {
    profileIdc,
    constraintFlags,
    levelIdc,
    spsId,
    chromaFormatIdc,
    bitDepthLuma,
    bitDepthChroma,
    frameMbsOnly,
    codedWidth,
    codedHeight,
    width,
    height,
  };
}

/** scaling_list() of §7.3.2.1.1.1, values unused: 16 coefficients for the first 6, else 64. */
function skipScalingLists(r: BitReader, count: number): void {
  for (let i = 0; i < count; i++) {
    if (r.bit() === 0) {
      continue;
    }
    const size = i < 6 ? 16 : 64;
    let last = 8;
    let next = 8;
    for (let j = 0; j < size && !r.overrun; j++) {
      if (next !== 0) {
        next = (last + r.se() + 256) % 256;
      }
      last = next === 0 ? last : next;
    }
  }
}

/** What `open` declared, and the channel's limits. */
export interface H264CheckerOptions {
  /** The avcC (`video.description`). */
  description: Uint8Array;
  /** `avc1.PPCCLL`. */
  codec: string;
  width: number;
  height: number;
  maxWidth: number;
  maxHeight: number;
}

/**
 * The checker of an `avc1.*` session's chunks. Throws, with the reason, when the configuration
 * itself is bad: an avcC that does not parse, a codec string whose profile differs from the SPS's
 * or whose level is below it (a decoder set up for the declared level could not decode the
 * stream; a higher declared level is harmless), an SPS whose output size is not the declared
 * size, or a size over the channel's limit.
 */
export function createH264Checker(options: H264CheckerOptions): VideoChunkCheck {
  const match = /^avc1\.([0-9a-fA-F]{2})[0-9a-fA-F]{2}([0-9a-fA-F]{2})$/.exec(options.codec);
  if (!match) {
    throw new Error(`codec ${options.codec} is not avc1.PPCCLL`);
  }
  // A copy: the checker outlives the message the description came in.
  const avc = parseAvcC(Uint8Array.from(options.description));
  const spsList = avc.sps.map((nal, i) => {
    try {
      return parseSps(nal);
    } catch (err) {
      throw new Error(`avcC SPS ${i + 1}: ${(err as Error).message}`);
    }
  });
  const first = spsList[0];
  if (avc.profile !== first.profileIdc) {
    throw new Error(
      `the avcC says profile_idc ${avc.profile} but its SPS says ${first.profileIdc}`,
    );
  }
  const codecProfile = parseInt(match[1], 16);
  const codecLevel = parseInt(match[2], 16);
  if (codecProfile !== first.profileIdc) {
    throw new Error(
      `codec ${options.codec} says profile_idc ${codecProfile} but the SPS says ${first.profileIdc}`,
    );
  }
  const level = Math.max(avc.level, ...spsList.map((s) => s.levelIdc));
  if (codecLevel < level) {
    throw new Error(
      `codec ${options.codec} says level ${codecLevel / 10} but the avcC says ${level / 10}`,
    );
  }
  for (const sps of spsList) {
    if (sps.width !== options.width || sps.height !== options.height) {
      throw new Error(
        `the SPS codes ${sps.width}x${sps.height} but open declared ` +
          `${options.width}x${options.height}`,
      );
    }
  }
  if (first.width > options.maxWidth || first.height > options.maxHeight) {
    throw new Error(
      `${first.width}x${first.height} is over the limit of ${options.maxWidth}x${options.maxHeight}`,
    );
  }
  return new H264ChunkChecker(avc, spsList);
}

/** Names of the NAL unit types a chunk may not hold (Table 7-1), for refusals. */
function refusedNalName(type: number): string {
  if (type >= 2 && type <= 4) {
    return 'data partition';
  }
  switch (type) {
    case 13:
      return 'SPS extension';
    case 14:
      return 'SVC prefix';
    case 15:
      return 'subset SPS';
    case 16:
      return 'depth parameter set';
    case 19:
      return 'auxiliary slice';
    case 20:
    case 21:
      return 'SVC/MVC slice extension';
    default:
      return type === 0 || type >= 24 ? 'unspecified' : 'reserved';
  }
}

/** Why a chunk is refused; the numbers its reason names are in the checker's problem fields. */
type H264Problem =
  | 'empty'
  | 'length-cut'
  | 'length-zero'
  | 'length-overrun'
  | 'forbidden-bit'
  | 'idr-ref-zero'
  | 'slice-cut'
  | 'slice-type'
  | 'idr-slice-type'
  | 'b-slice'
  | 'unknown-pps'
  | 'first-mb'
  | 'sps-changed'
  | 'pps-changed'
  | 'ref-idc'
  | 'nal-type'
  | 'no-slice'
  | 'mixed'
  | 'key-without-idr'
  | 'idr-not-key';

/**
 * ISO/IEC 14496-10 §7.3/§7.4 rules on one access unit in AVCC form (ISO/IEC 14496-15 §5.3.2):
 * length-prefixed NAL units that fill the chunk exactly; forbidden_zero_bit 0; only slices (1, 5),
 * SEI, SPS/PPS identical to the avcC's, AUD, end of sequence/stream and filler; nal_ref_idc
 * non-zero on IDR and zero on SEI/AUD/end/filler (§7.4.1); each slice header's first_mb_in_slice
 * inside the picture, a valid slice_type (I or SI only in an IDR picture, §7.4.3) and a PPS of the
 * avcC; at least one slice, IDR and non-IDR not mixed, and the key flag set exactly when the
 * picture is IDR.
 *
 * `scan` finds the problem and `reason` words it. No sentence is written in `scan`: V8 computes
 * a number's string where a template literal needs it, and when two templates name the same
 * number it does so once, before the branches, on every chunk (measured: a string allocated per
 * chunk or two, for a sentence never sent).
 */
class H264ChunkChecker implements VideoChunkCheck {
  private readonly lengthSize: number;
  private readonly sps: Uint8Array[];
  private readonly pps: Uint8Array[];
  /** Macroblocks of the frame coded by the SPS each PPS refers to, by pic_parameter_set_id; 0: no such PPS. */
  private readonly frameMbs = new Float64Array(MAX_PPS_ID + 1);
  private readonly reader = new BitReader();
  /** The byte offset, the value read and its bound, of the last problem found. */
  private problemAt = 0;
  private problemValue = 0;
  private problemBound = 0;

  constructor(avc: AvcDecoderConfig, spsList: SpsInfo[]) {
    this.lengthSize = avc.lengthSize;
    this.sps = avc.sps;
    this.pps = avc.pps;
    for (const [i, nal] of avc.pps.entries()) {
      const r = new BitReader().reset(nal, 1, nal.length, true);
      const ppsId = r.ue();
      const spsId = r.ue();
      const sps = spsList.find((s) => s.spsId === spsId);
      if (r.overrun || ppsId > MAX_PPS_ID) {
        throw new Error(`avcC PPS ${i + 1} is cut short or out of range`);
      }
      if (!sps) {
        throw new Error(`avcC PPS ${ppsId} refers to SPS ${spsId}, which the avcC does not hold`);
      }
      this.frameMbs[ppsId] = (sps.codedWidth / 16) * (sps.codedHeight / 16);
    }
  }

  check(chunk: Buffer, key: boolean): string | null {
    const problem = this.scan(chunk, key);
    return problem === null ? null : this.reason(problem, chunk.length);
  }

  private scan(chunk: Buffer, key: boolean): H264Problem | null {
    const n = chunk.length;
    if (n === 0) {
      return 'empty';
    }
    let idr = false;
    let nonIdr = false;
    let at = 0;
    while (at < n) {
      if (at + this.lengthSize > n) {
        return this.found('length-cut', at, 0);
      }
      const length = this.readLength(chunk, at);
      const start = at + this.lengthSize;
      if (length === 0) {
        return this.found('length-zero', at, 0);
      }
      if (length < 0 || length > n - start) {
        return this.found('length-overrun', at, length >>> 0);
      }
      const header = chunk[start];
      if ((header & 0x80) !== 0) {
        return this.found('forbidden-bit', start, 0);
      }
      const type = header & 0x1f;
      const refIdc = (header >> 5) & 3;
      switch (type) {
        case NalType.Slice:
        case NalType.Idr: {
          if (type === NalType.Idr && refIdc === 0) {
            return 'idr-ref-zero';
          }
          const problem = this.scanSliceHeader(chunk, start, start + length, type === NalType.Idr);
          if (problem !== null) {
            return problem;
          }
          idr ||= type === NalType.Idr;
          nonIdr ||= type === NalType.Slice;
          break;
        }
        case NalType.Sps:
          if (!holdsEqual(this.sps, chunk, start, length)) {
            return 'sps-changed';
          }
          break;
        case NalType.Pps:
          if (!holdsEqual(this.pps, chunk, start, length)) {
            return 'pps-changed';
          }
          break;
        case NalType.Sei:
        case NalType.Aud:
        case 10: // end of sequence
        case 11: // end of stream
        case 12: // filler data
          if (refIdc !== 0) {
            return this.found('ref-idc', start, type, refIdc);
          }
          break;
        default:
          return this.found('nal-type', start, type);
      }
      at = start + length;
    }
    if (!idr && !nonIdr) {
      return 'no-slice';
    }
    if (idr && nonIdr) {
      return 'mixed';
    }
    if (key !== idr) {
      return key ? 'key-without-idr' : 'idr-not-key';
    }
    return null;
  }

  /**
   * The big-endian length at `at`, as a signed 32-bit integer: a 4-byte length of 2^31 or more is
   * negative (and overruns any chunk). Kept in int32 so that V8 never boxes it into a heap number.
   */
  private readLength(chunk: Buffer, at: number): number {
    switch (this.lengthSize) {
      case 1:
        return chunk[at];
      case 2:
        return (chunk[at] << 8) | chunk[at + 1];
      default:
        return (chunk[at] << 24) | (chunk[at + 1] << 16) | (chunk[at + 2] << 8) | chunk[at + 3];
    }
  }

  /** first_mb_in_slice, slice_type and pic_parameter_set_id (§7.3.3), read in place. */
  private scanSliceHeader(
    chunk: Buffer,
    start: number,
    end: number,
    idr: boolean,
  ): H264Problem | null {
    const r = this.reader.reset(chunk, start + 1, end, true);
    const firstMb = r.ue();
    const sliceType = r.ue();
    const ppsId = r.ue();
    if (r.overrun) {
      return this.found('slice-cut', start, 0);
    }
    if (sliceType > 9) {
      return this.found('slice-type', start, sliceType);
    }
    if (idr && sliceType % 5 !== 2 && sliceType % 5 !== 4) {
      return this.found('idr-slice-type', start, sliceType);
    }
    // A B slice predicts from a later picture, so its chunk's decode order differs from capture
    // order; chunks are recorded in arrival order at their capture times (a real-time encoder
    // emits none), and the MP4 would hold frames out of order.
    if (sliceType % 5 === 1) {
      return this.found('b-slice', start, sliceType);
    }
    const frameMbs = ppsId <= MAX_PPS_ID ? this.frameMbs[ppsId] : 0;
    if (frameMbs === 0) {
      return this.found('unknown-pps', start, ppsId);
    }
    if (firstMb >= frameMbs) {
      return this.found('first-mb', start, firstMb, frameMbs);
    }
    return null;
  }

  private found(problem: H264Problem, at: number, value: number, bound = 0): H264Problem {
    this.problemAt = at;
    this.problemValue = value;
    this.problemBound = bound;
    return problem;
  }

  private reason(problem: H264Problem, n: number): string {
    const at = this.problemAt;
    const value = this.problemValue;
    switch (problem) {
      case 'empty':
        return 'empty chunk';
      case 'length-cut':
        return `the NAL unit length at byte ${at} is cut off (the chunk has ${n} bytes)`;
      case 'length-zero':
        return `NAL unit length 0 at byte ${at}`;
      case 'length-overrun':
        return `NAL unit length ${value} overruns the chunk (${n} bytes)`;
      case 'forbidden-bit':
        return `the NAL unit at byte ${at} has forbidden_zero_bit set`;
      case 'idr-ref-zero':
        return 'an IDR slice with nal_ref_idc 0';
      case 'slice-cut':
        return `the slice header at byte ${at} is cut short`;
      case 'slice-type':
        return `slice_type ${value} is out of range`;
      case 'idr-slice-type':
        return `an IDR picture holds a slice of slice_type ${value} (only I and SI are allowed)`;
      case 'b-slice':
        return 'B slices are not accepted: send frames in capture order (no B-frames)';
      case 'unknown-pps':
        return `a slice refers to PPS ${value}, which the description (avcC) does not hold`;
      case 'first-mb':
        return `a slice starts at macroblock ${value}, beyond the picture's ${this.problemBound}`;
      case 'sps-changed':
        return 'SPS changes mid-stream: an in-band SPS differs from the description (avcC)';
      case 'pps-changed':
        return 'PPS changes mid-stream: an in-band PPS differs from the description (avcC)';
      case 'ref-idc':
        return `NAL unit type ${value} with nal_ref_idc ${this.problemBound} (it must be 0)`;
      case 'nal-type':
        return `NAL unit type ${value} (${refusedNalName(value)}) is not allowed`;
      case 'no-slice':
        return 'the chunk holds no slice (no picture)';
      case 'mixed':
        return 'the chunk mixes IDR and non-IDR slices';
      case 'key-without-idr':
        return 'flagged key, but the chunk holds no IDR picture';
      case 'idr-not-key':
        return 'the chunk holds an IDR picture but is not flagged key';
    }
  }
}

/** Whether one of `sets` has exactly the bytes `chunk[start, start + length)`. */
function holdsEqual(sets: Uint8Array[], chunk: Buffer, start: number, length: number): boolean {
  for (let s = 0; s < sets.length; s++) {
    const set = sets[s];
    if (set.length !== length) {
      continue;
    }
    let i = 0;
    while (i < length && set[i] === chunk[start + i]) {
      i++;
    }
    if (i === length) {
      return true;
    }
  }
  return false;
}
