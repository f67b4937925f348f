import {
  avcCodecString as spsCodecString,
  isIdrAccessUnit,
  NalType,
  nalUnitType,
  splitAnnexBNalUnits,
} from '../protocol/annexb';
import { appendGrowing } from './grow-buffer';

const START_CODE = Buffer.from([0, 0, 1]);
/** First capacity of the splitter's work buffer; it doubles when an access unit outgrows it. */
const INITIAL_CAPACITY = 256 * 1024;

/**
 * Splits an Annex B byte stream into access units, each starting at its access unit delimiter
 * (x264's `aud=1`). Chunks may be cut anywhere, including inside a start code. An access unit is
 * complete only once the next one's delimiter arrives, so the last one comes from `flush()`.
 */
export class AccessUnitSplitter {
  /** Holds the access unit in progress; bytes are copied in once per chunk, never per byte. */
  private buf: Buffer = Buffer.allocUnsafe(INITIAL_CAPACITY);
  private length = 0;
  /** Where the next start-code search resumes (a start code may straddle two chunks). */
  private scanFrom = 0;

  constructor(private readonly onAccessUnit: (au: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.append(chunk);
    let auStart = 0;
    const view = this.buf.subarray(0, this.length);
    for (;;) {
      const at = view.indexOf(START_CODE, this.scanFrom);
      if (at < 0) {
        // Keep the last two bytes in reach: they may be the first two of a start code.
        this.scanFrom = Math.max(this.scanFrom, this.length - 2);
        break;
      }
      if (at + 3 >= this.length) {
        // The NAL header byte is still to come.
        this.scanFrom = at;
        break;
      }
      this.scanFrom = at + 3;
      if ((view[at + 3] & 0x1f) !== NalType.Aud) {
        continue;
      }
      // A 4-byte start code's leading zero belongs to the access unit it opens.
      const cut = at > 0 && view[at - 1] === 0 ? at - 1 : at;
      if (cut > auStart) {
        this.onAccessUnit(Buffer.from(view.subarray(auStart, cut)));
        auStart = cut;
      }
    }
    if (auStart > 0) {
      this.buf.copyWithin(0, auStart, this.length);
      this.length -= auStart;
      this.scanFrom -= auStart;
    }
  }

  /** The last access unit, at end of stream (null when nothing is pending). */
  flush(): Buffer | null {
    const rest = this.length > 0 ? Buffer.from(this.buf.subarray(0, this.length)) : null;
    this.length = 0;
    this.scanFrom = 0;
    return rest;
  }

  private append(chunk: Buffer): void {
    this.buf = appendGrowing(this.buf, this.length, chunk);
    this.length += chunk.length;
  }
}

/** Whether the access unit holds an IDR slice (a point a decoder can start from). */
export function isKeyframe(au: Buffer): boolean {
  return isIdrAccessUnit(au);
}

/** The RFC 6381 codec string (`avc1.PPCCLL`) from the access unit's SPS, or null without one. */
export function avcCodecString(au: Buffer): string | null {
  const sps = splitAnnexBNalUnits(au).find((nal) => nalUnitType(nal) === NalType.Sps);
  return sps && sps.length >= 4 ? spsCodecString(sps) : null;
}
