import { appendGrowing } from './grow-buffer';

/** H.264 Annex B NAL unit types this module looks for. */
const NAL_IDR = 5;
const NAL_SPS = 7;
const NAL_AUD = 9;

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
      if ((view[at + 3] & 0x1f) !== NAL_AUD) {
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

/** Byte offsets of the NAL header bytes in an Annex B buffer. */
function* nalHeaders(au: Buffer): Generator<number> {
  let at = au.indexOf(START_CODE);
  while (at >= 0 && at + 3 < au.length) {
    yield at + 3;
    at = au.indexOf(START_CODE, at + 3);
  }
}

/** Whether the access unit holds an IDR slice (a point a decoder can start from). */
export function isKeyframe(au: Buffer): boolean {
  for (const header of nalHeaders(au)) {
    if ((au[header] & 0x1f) === NAL_IDR) {
      return true;
    }
  }
  return false;
}

/**
 * The RFC 6381 codec string (`avc1.PPCCLL`) from the access unit's SPS, or null without one.
 * profile_idc is never 0, so no emulation-prevention byte can fall within these three bytes.
 */
export function avcCodecString(au: Buffer): string | null {
  for (const header of nalHeaders(au)) {
    if ((au[header] & 0x1f) === NAL_SPS && header + 3 < au.length) {
      return `avc1.${hex2(au[header + 1])}${hex2(au[header + 2])}${hex2(au[header + 3])}`;
    }
  }
  return null;
}

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}
