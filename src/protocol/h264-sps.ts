// `.js` specifiers: the SDK's ESM build (client/) compiles this file too.
import { BitReader } from './bit-reader.js';

/** nal_unit_type of a sequence parameter set (ISO/IEC 14496-10 Table 7-1). */
const SPS_NAL_TYPE = 7;

/**
 * The H.264 sequence parameter set, read in full up to its frame cropping: one parser for the
 * server's bitstream checks (src/media/codecs), the avcC builder (annexb) and the SDK's CLI.
 */

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

/**
 * Reads an SPS NAL unit up to its frame cropping (§7.3.2.1.1), skipping scaling lists, and
 * computes its output size (§7.4.2.1.1, frame_crop_*_offset with CropUnitX/Y). Throws on an SPS
 * cut short or with values out of their ranges.
 */
export function parseSps(nal: Uint8Array): SpsInfo {
  if (nal.length < 4 || (nal[0] & 0x1f) !== SPS_NAL_TYPE) {
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
