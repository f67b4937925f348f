/**
 * The picture size an H.264 SPS declares, for the `open` of a pushed H.264 stream (`video.width`
 * and `height` must say what the SPS says), and the RBSP reader it uses (also for slice types).
 * The server's full SPS parser (src/media/codecs) is CommonJS-style server code the SDK's ESM
 * build cannot import, as src/protocol/annexb reads its own few SPS fields for the same reason;
 * this reads the ones a size needs.
 */

/** profile_idc values whose SPS holds chroma_format_idc, bit depths and scaling matrices. */
const FORMAT_PROFILES: readonly number[] = [
  100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135,
];

/** MSB-first bits of an RBSP, with Exp-Golomb codes (ISO/IEC 14496-10 §9.1). */
export class RbspReader {
  private bit = 0;
  private readonly bytes: number[] = [];

  /** `nal` from its byte `from` on, emulation-prevention bytes (00 00 03) dropped. */
  constructor(nal: Uint8Array, from: number) {
    for (let i = from, zeros = 0; i < nal.length; i++) {
      if (zeros >= 2 && nal[i] === 3) {
        zeros = 0;
        continue;
      }
      this.bytes.push(nal[i]);
      zeros = nal[i] === 0 ? zeros + 1 : 0;
    }
  }

  u1(): number {
    if (this.bit >= this.bytes.length * 8) {
      throw new Error('the NAL unit ends before the fields read');
    }
    const value = (this.bytes[this.bit >> 3] >> (7 - (this.bit & 7))) & 1;
    this.bit++;
    return value;
  }

  ue(): number {
    let zeros = 0;
    while (this.u1() === 0) {
      if (++zeros > 31) {
        throw new Error('an Exp-Golomb code over 32 bits');
      }
    }
    let value = 0;
    for (let i = 0; i < zeros; i++) {
      value = value * 2 + this.u1();
    }
    return 2 ** zeros - 1 + value;
  }

  se(): number {
    const k = this.ue();
    return k % 2 === 1 ? (k + 1) / 2 : -(k / 2);
  }
}

/** Skips a scaling_list() of `size` coefficients (§7.3.2.1.1.1). */
function skipScalingList(r: RbspReader, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) {
      next = (last + r.se() + 256) % 256;
    }
    last = next === 0 ? last : next;
  }
}

/**
 * Width and height of the pictures of an SPS NAL unit (header byte included): the macroblocks,
 * field coding and the cropping window, in the crop units of its chroma format (§7.4.2.1.1).
 */
export function spsSize(sps: Uint8Array): { width: number; height: number } {
  if (sps.length < 4 || (sps[0] & 0x1f) !== 7) {
    throw new Error('not an SPS NAL unit');
  }
  const r = new RbspReader(sps, 4);
  r.ue(); // seq_parameter_set_id
  let chromaFormat = 1;
  let separatePlanes = 0;
  if (FORMAT_PROFILES.includes(sps[1])) {
    chromaFormat = r.ue();
    if (chromaFormat === 3) {
      separatePlanes = r.u1();
    }
    r.ue(); // bit_depth_luma_minus8
    r.ue(); // bit_depth_chroma_minus8
    r.u1(); // qpprime_y_zero_transform_bypass_flag
    if (r.u1() === 1) {
      for (let i = 0; i < (chromaFormat === 3 ? 12 : 8); i++) {
        if (r.u1() === 1) {
          skipScalingList(r, i < 6 ? 16 : 64);
        }
      }
    }
  }
  r.ue(); // log2_max_frame_num_minus4
  const pocType = r.ue();
  if (pocType === 0) {
    r.ue(); // log2_max_pic_order_cnt_lsb_minus4
  } else if (pocType === 1) {
    r.u1(); // delta_pic_order_always_zero_flag
    r.se(); // offset_for_non_ref_pic
    r.se(); // offset_for_top_to_bottom_field
    const cycle = r.ue();
    for (let i = 0; i < cycle; i++) {
      r.se(); // offset_for_ref_frame
    }
  }
  r.ue(); // max_num_ref_frames
  r.u1(); // gaps_in_frame_num_value_allowed_flag
  const widthInMbs = r.ue() + 1;
  const heightInMapUnits = r.ue() + 1;
  const frameMbsOnly = r.u1();
  if (frameMbsOnly === 0) {
    r.u1(); // mb_adaptive_frame_field_flag
  }
  r.u1(); // direct_8x8_inference_flag
  let width = widthInMbs * 16;
  let height = heightInMapUnits * 16 * (2 - frameMbsOnly);
  if (r.u1() === 1) {
    const [left, right, top, bottom] = [r.ue(), r.ue(), r.ue(), r.ue()];
    const monochrome = separatePlanes === 1 || chromaFormat === 0;
    const cropX = monochrome || chromaFormat === 3 ? 1 : 2;
    const cropY = (monochrome || chromaFormat !== 1 ? 1 : 2) * (2 - frameMbsOnly);
    width -= cropX * (left + right);
    height -= cropY * (top + bottom);
  }
  if (width <= 0 || height <= 0) {
    throw new Error(`the SPS crops its pictures to ${width}x${height}`);
  }
  return { width, height };
}
