// `.js` specifiers: the SDK's ESM build (client/) compiles this file too.
import { parseSps } from './h264-sps.js';

/**
 * H.264 Annex B byte streams (ISO/IEC 14496-10 Annex B: NAL units behind 00 00 01 start codes),
 * as ffmpeg and x264 write them, turned into what an `avc1.*` session sends: one access unit per
 * chunk in AVCC form, and the avcC record as `description`. Shared by the server, the SDK's CLI and
 * the benches; plain Uint8Array (browsers have no Buffer) and imports from src/protocol only, so
 * the SDK's ESM build compiles it as is. Not on the per-frame path of the server.
 */

/** nal_unit_type values (ISO/IEC 14496-10 Table 7-1) that these helpers act on. */
export const NalType = {
  Slice: 1,
  PartitionA: 2,
  PartitionC: 4,
  Idr: 5,
  Sei: 6,
  Sps: 7,
  Pps: 8,
  Aud: 9,
} as const;

/** An access unit given either as Annex B bytes or as its NAL units (without start codes). */
export type AnnexBAccessUnit = Uint8Array | readonly Uint8Array[];

/** Lengths in the AVCC form written here: 4 bytes, as WebCodecs' `VideoEncoder` writes them. */
const AVCC_LENGTH_BYTES = 4;
/** The splitter's first buffer; it doubles when a NAL unit outgrows it. */
const SPLITTER_INITIAL_CAPACITY = 64 * 1024;

/** nal_unit_type of a NAL unit (its first byte's low 5 bits). */
export function nalUnitType(nal: Uint8Array): number {
  return nal[0] & 0x1f;
}

/**
 * The offset just past the first start code (00 00 01) that begins at or after `from`, or -1.
 * Looks for the 01 with the native indexOf: in coded data it is rare enough to make this a scan
 * of a few candidates rather than of every byte.
 */
function nextStartCode(buf: Uint8Array, from: number): number {
  let one = buf.indexOf(1, from + 2);
  while (one >= 0) {
    if (buf[one - 1] === 0 && buf[one - 2] === 0) {
      return one + 1;
    }
    one = buf.indexOf(1, one + 1);
  }
  return -1;
}

/**
 * Where the NAL unit that starts at `start` ends, given that the next start code begins at `end`:
 * before any trailing_zero_8bits and the zero_byte of a 4-byte start code. A NAL unit never ends
 * in 00 (its last byte holds the rbsp_stop_one_bit, or is a cabac_zero_word's 03).
 */
function trimZeros(buf: Uint8Array, start: number, end: number): number {
  while (end > start && buf[end - 1] === 0) {
    end--;
  }
  return end;
}

/** The NAL units of an Annex B buffer (views into it, start codes and trailing zeros removed). */
export function splitAnnexBNalUnits(buf: Uint8Array): Uint8Array[] {
  const units: Uint8Array[] = [];
  let start = nextStartCode(buf, 0);
  while (start >= 0) {
    const next = nextStartCode(buf, start);
    const end = trimZeros(buf, start, next < 0 ? buf.length : next - 3);
    if (end > start) {
      units.push(buf.subarray(start, end));
    }
    start = next;
  }
  return units;
}

function isVcl(type: number): boolean {
  return type >= NalType.Slice && type <= NalType.Idr;
}

/**
 * Whether `nal` is the first NAL unit of a new access unit, given that the current one already
 * holds a slice (ISO/IEC 14496-10 §7.4.1.2.3): an AUD, SPS, PPS, SEI or a type 14-18 unit, or the
 * first slice of a new picture. A slice with first_mb_in_slice 0 starts a picture; ue(v) of 0 is
 * the single bit 1, so it is the top bit of the byte after the NAL header.
 */
function startsAccessUnit(nal: Uint8Array): boolean {
  const type = nalUnitType(nal);
  if (type === NalType.Slice || type === NalType.Idr || type === NalType.PartitionA) {
    return nal.length > 1 && (nal[1] & 0x80) !== 0;
  }
  return (type >= NalType.Sei && type <= NalType.Aud) || (type >= 14 && type <= 18);
}

/**
 * Groups NAL units into access units. A boundary is only taken once the current unit holds a
 * slice, so parameter sets written before an AUD (older h264_mp4toannexb does so) stay with the
 * picture they precede.
 */
class AccessUnitGrouper {
  private units: Uint8Array[] = [];
  private hasSlice = false;

  add(nal: Uint8Array, out: Uint8Array[][]): void {
    if (this.hasSlice && startsAccessUnit(nal)) {
      this.finish(out);
    }
    this.units.push(nal);
    this.hasSlice ||= isVcl(nalUnitType(nal));
  }

  finish(out: Uint8Array[][]): void {
    if (this.units.length > 0) {
      out.push(this.units);
      this.units = [];
    }
    this.hasSlice = false;
  }
}

/** The access units of an Annex B buffer, each as its NAL units (views into `buf`). */
export function splitAnnexBAccessUnits(buf: Uint8Array): Uint8Array[][] {
  const grouper = new AccessUnitGrouper();
  const out: Uint8Array[][] = [];
  for (const nal of splitAnnexBNalUnits(buf)) {
    grouper.add(nal, out);
  }
  grouper.finish(out);
  return out;
}

/**
 * Splits an Annex B stream that arrives in pieces cut anywhere (stdin, a pipe from ffmpeg) into
 * access units, with the rules of `splitAnnexBAccessUnits`. A NAL unit is complete once the next
 * start code arrives and an access unit once the next one starts, so the last ones come from
 * `end()`. Each NAL unit handed out is its own copy.
 */
export class AnnexBAccessUnitSplitter {
  private buf = new Uint8Array(SPLITTER_INITIAL_CAPACITY);
  private length = 0;
  /** Offset of the pending NAL unit's first byte; -1 before the first start code. */
  private nalStart = -1;
  /** Where the next start-code search resumes (a start code may straddle two pieces). */
  private scanFrom = 0;
  private readonly grouper = new AccessUnitGrouper();

  /** Takes the next piece of the stream; returns the access units it completed. */
  push(piece: Uint8Array): Uint8Array[][] {
    this.append(piece);
    const out: Uint8Array[][] = [];
    const view = this.buf.subarray(0, this.length);
    for (;;) {
      const next = nextStartCode(view, this.scanFrom);
      if (next < 0) {
        this.scanFrom = Math.max(this.scanFrom, this.length - 2);
        break;
      }
      this.takeNal(next - 3, out);
      this.nalStart = next;
      this.scanFrom = next;
    }
    this.compact();
    return out;
  }

  /** The stream ended: returns the access units still held. */
  end(): Uint8Array[][] {
    const out: Uint8Array[][] = [];
    this.takeNal(this.length, out);
    this.grouper.finish(out);
    this.length = 0;
    this.nalStart = -1;
    this.scanFrom = 0;
    return out;
  }

  private takeNal(end: number, out: Uint8Array[][]): void {
    if (this.nalStart < 0) {
      return;
    }
    const stop = trimZeros(this.buf, this.nalStart, end);
    if (stop > this.nalStart) {
      this.grouper.add(this.buf.slice(this.nalStart, stop), out);
    }
  }

  /** Drops what was handed out, or the bytes before the first start code. */
  private compact(): void {
    const keep = this.nalStart >= 0 ? this.nalStart : this.scanFrom;
    if (keep <= 0) {
      return;
    }
    this.buf.copyWithin(0, keep, this.length);
    this.length -= keep;
    this.scanFrom -= keep;
    if (this.nalStart >= 0) {
      this.nalStart = 0;
    }
  }

  private append(piece: Uint8Array): void {
    const needed = this.length + piece.length;
    if (needed > this.buf.length) {
      let capacity = this.buf.length * 2;
      while (capacity < needed) {
        capacity *= 2;
      }
      const grown = new Uint8Array(capacity);
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
    }
    this.buf.set(piece, this.length);
    this.length = needed;
  }
}

function nalUnitsOf(au: AnnexBAccessUnit): readonly Uint8Array[] {
  return au instanceof Uint8Array ? splitAnnexBNalUnits(au) : au;
}

/**
 * The access unit as a chunk of an `avc1.*` session: each NAL unit behind its 4-byte big-endian
 * length, without SPS, PPS and AUD (the parameter sets travel in the avcC `description`).
 */
export function annexBToAvcc(au: AnnexBAccessUnit): Uint8Array {
  const units = nalUnitsOf(au).filter((nal) => {
    const type = nalUnitType(nal);
    return type !== NalType.Sps && type !== NalType.Pps && type !== NalType.Aud;
  });
  let total = 0;
  for (const nal of units) {
    total += AVCC_LENGTH_BYTES + nal.length;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const nal of units) {
    const n = nal.length;
    out[at] = n >>> 24;
    out[at + 1] = n >>> 16;
    out[at + 2] = n >>> 8;
    out[at + 3] = n;
    out.set(nal, at + AVCC_LENGTH_BYTES);
    at += AVCC_LENGTH_BYTES + n;
  }
  return out;
}

/** Whether the access unit holds an IDR slice (a point a decoder can start from: a key frame). */
export function isIdrAccessUnit(au: AnnexBAccessUnit): boolean {
  if (!(au instanceof Uint8Array)) {
    return au.some((nal) => nalUnitType(nal) === NalType.Idr);
  }
  for (let at = nextStartCode(au, 0); at >= 0 && at < au.length; at = nextStartCode(au, at)) {
    if ((au[at] & 0x1f) === NalType.Idr) {
      return true;
    }
  }
  return false;
}

function checkSps(sps: Uint8Array): void {
  if (sps.length < 4 || nalUnitType(sps) !== NalType.Sps) {
    throw new Error(
      `not an SPS: NAL unit type ${sps.length > 0 ? nalUnitType(sps) : 'none'}, ${sps.length} bytes`,
    );
  }
}

/**
 * The RFC 6381 codec string `avc1.PPCCLL` of an SPS NAL unit: profile_idc, the constraint flags
 * byte and level_idc in hex. profile_idc is never 0, so no emulation-prevention byte can fall
 * within these three bytes.
 */
export function avcCodecString(sps: Uint8Array): string {
  checkSps(sps);
  return `avc1.${hex2(sps[1])}${hex2(sps[2])}${hex2(sps[3])}`;
}

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}

/**
 * profile_idc values whose avcC ends after the PPS: Baseline, Main and Extended. Every other
 * profile's carries chroma format and bit depths (ISO/IEC 14496-15 §5.3.3.1.2; ffmpeg writes it
 * so too).
 */
const AVCC_SHORT_PROFILES: readonly number[] = [66, 77, 88];
/** chroma_format_idc and the bit depths of an SPS, for the avcC extension. */
function spsFormat(sps: Uint8Array): { chroma: number; lumaMinus8: number; chromaMinus8: number } {
  const info = parseSps(sps);
  return {
    chroma: info.chromaFormatIdc,
    lumaMinus8: info.bitDepthLuma - 8,
    chromaMinus8: info.bitDepthChroma - 8,
  };
}

/**
 * The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1, "avcC") of these parameter sets,
 * with 4-byte NAL unit lengths: the `description` of an `avc1.*` session. Profile, constraints
 * and level are the first SPS's.
 */
export function avcCFromParameterSets(
  sps: Uint8Array | readonly Uint8Array[],
  pps: Uint8Array | readonly Uint8Array[],
): Uint8Array {
  const spsList = sps instanceof Uint8Array ? [sps] : sps;
  const ppsList = pps instanceof Uint8Array ? [pps] : pps;
  if (spsList.length < 1 || spsList.length > 31) {
    throw new Error(`an avcC holds 1 to 31 SPS, not ${spsList.length}`);
  }
  if (ppsList.length < 1 || ppsList.length > 255) {
    throw new Error(`an avcC holds 1 to 255 PPS, not ${ppsList.length}`);
  }
  for (const nal of spsList) {
    checkSps(nal);
  }
  for (const nal of ppsList) {
    if (nal.length < 2 || nalUnitType(nal) !== NalType.Pps) {
      throw new Error(`not a PPS: ${nal.length} bytes, NAL unit type ${nalUnitType(nal)}`);
    }
  }
  for (const nal of [...spsList, ...ppsList]) {
    if (nal.length > 0xffff) {
      throw new Error(`a parameter set of ${nal.length} bytes does not fit an avcC (64 KiB)`);
    }
  }
  const first = spsList[0];
  const extended = !AVCC_SHORT_PROFILES.includes(first[1]);
  let total = 7 + (extended ? 4 : 0);
  for (const nal of [...spsList, ...ppsList]) {
    total += 2 + nal.length;
  }
  const out = new Uint8Array(total);
  out[0] = 1; // configurationVersion
  out[1] = first[1];
  out[2] = first[2];
  out[3] = first[3];
  out[4] = 0xfc | (AVCC_LENGTH_BYTES - 1);
  out[5] = 0xe0 | spsList.length;
  let at = 6;
  const put = (nal: Uint8Array): void => {
    out[at] = nal.length >>> 8;
    out[at + 1] = nal.length & 0xff;
    out.set(nal, at + 2);
    at += 2 + nal.length;
  };
  spsList.forEach(put);
  out[at++] = ppsList.length;
  ppsList.forEach(put);
  if (extended) {
    const format = spsFormat(first);
    out[at++] = 0xfc | format.chroma;
    out[at++] = 0xf8 | format.lumaMinus8;
    out[at++] = 0xf8 | format.chromaMinus8;
    out[at++] = 0; // numOfSequenceParameterSetExt
  }
  return out;
}
