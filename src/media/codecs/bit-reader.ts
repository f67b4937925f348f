const EMPTY = new Uint8Array(0);
/** The longest Exp-Golomb prefix read: ue(v) values fit 32 bits (ISO/IEC 14496-10 §9.1). */
const MAX_LEADING_ZEROS = 31;

/**
 * An MSB-first bit reader over a byte range: f(n)/u(n), and the Exp-Golomb ue(v)/se(v) of
 * ISO/IEC 14496-10 §9.1. In RBSP mode it drops emulation-prevention bytes (the 03 of 00 00 03,
 * §7.4.1) as it goes, so an SPS or slice header is read in place, without an unescaped copy.
 *
 * It never throws: reading past the range, or an Exp-Golomb code over 32 bits, yields zeros and
 * sets `overrun`, so a per-frame check reads a whole header and tests once. A checker keeps one
 * reader and `reset`s it for each header: nothing is allocated per frame.
 */
export class BitReader {
  /** The range ended before what was read, or an Exp-Golomb code was over 32 bits. */
  overrun = false;
  private data: Uint8Array = EMPTY;
  private pos = 0;
  private end = 0;
  private rbsp = false;
  /** Zero bytes just read, for emulation prevention. */
  private zeros = 0;
  private byte = 0;
  /** Bits of `byte` still unread. */
  private left = 0;

  /** Reads `data[start, end)` from its first bit; `rbsp` drops emulation-prevention bytes. */
  reset(data: Uint8Array, start = 0, end = data.length, rbsp = false): this {
    this.data = data;
    this.pos = start;
    this.end = Math.min(end, data.length);
    this.rbsp = rbsp;
    this.zeros = 0;
    this.left = 0;
    this.overrun = false;
    return this;
  }

  /** One bit (0 past the end). */
  bit(): number {
    if (this.left === 0 && !this.load()) {
      this.overrun = true;
      return 0;
    }
    this.left--;
    return (this.byte >> this.left) & 1;
  }

  /** An unsigned `n`-bit value, n ≤ 32. */
  bits(n: number): number {
    let value = 0;
    for (let i = 0; i < n; i++) {
      value = value * 2 + this.bit();
    }
    return value;
  }

  /** Skips `n` bits. */
  skip(n: number): void {
    for (let i = 0; i < n; i++) {
      this.bit();
    }
  }

  /** ue(v): unsigned Exp-Golomb (§9.1). */
  ue(): number {
    let zeros = 0;
    while (this.bit() === 0) {
      if (this.overrun || ++zeros > MAX_LEADING_ZEROS) {
        this.overrun = true;
        return 0;
      }
    }
    return 2 ** zeros - 1 + this.bits(zeros);
  }

  /** se(v): signed Exp-Golomb (§9.1.1): 1, -1, 2, -2, … for codes 1, 2, 3, 4, … */
  se(): number {
    const code = this.ue();
    // 0 - x rather than -x: code 0 is 0, not -0.
    return code % 2 === 1 ? (code + 1) / 2 : 0 - code / 2;
  }

  private load(): boolean {
    if (this.pos >= this.end) {
      return false;
    }
    if (this.rbsp && this.zeros >= 2 && this.data[this.pos] === 3) {
      this.zeros = 0;
      this.pos++;
      if (this.pos >= this.end) {
        return false;
      }
    }
    this.byte = this.data[this.pos++];
    this.zeros = this.byte === 0 ? this.zeros + 1 : 0;
    this.left = 8;
    return true;
  }
}
