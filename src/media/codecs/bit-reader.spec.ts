import fc from 'fast-check';
import { BitReader } from './bit-reader';

/** Bytes from a string of bits, padded with zeros to a whole byte. */
function bytes(bits: string): Uint8Array {
  const padded = bits.padEnd(Math.ceil(bits.length / 8) * 8, '0');
  return Uint8Array.from(padded.match(/.{8}/g) ?? [], (b) => parseInt(b, 2));
}

/** ue(v) as §9.1 codes it: leading zeros, then value + 1 in binary. */
function ueBits(value: number): string {
  const body = (value + 1).toString(2);
  return '0'.repeat(body.length - 1) + body;
}

describe('BitReader', () => {
  it('reads bits MSB first, across bytes', () => {
    const r = new BitReader().reset(Uint8Array.from([0b10110011, 0b01010101]));
    expect([r.bit(), r.bit(), r.bits(3)]).toEqual([1, 0, 0b110]);
    expect(r.bits(11)).toBe(0b01101010101);
    expect(r.overrun).toBe(false);
  });

  it('reads the Exp-Golomb codes of §9.1 (ue 0..8, se 0, 1, -1, 2, -2)', () => {
    const r = new BitReader().reset(
      bytes('1 010 011 00100 00101 00110 00111 0001000 0001001'.replace(/ /g, '')),
    );
    expect(Array.from({ length: 9 }, () => r.ue())).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const s = new BitReader().reset(bytes('1 010 011 00100 00101'.replace(/ /g, '')));
    expect(Array.from({ length: 5 }, () => s.se())).toEqual([0, 1, -1, 2, -2]);
    expect(s.overrun).toBe(false);
  });

  it('reads back any sequence of ue(v) values up to 2^32 - 2', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 2 ** 32 - 2 }), { minLength: 1 }),
        (values) => {
          const r = new BitReader().reset(bytes(values.map(ueBits).join('')));
          return values.every((v) => r.ue() === v) && !r.overrun;
        },
      ),
    );
  });

  it('drops the 03 of 00 00 03 in RBSP mode only', () => {
    const data = Uint8Array.from([0x00, 0x00, 0x03, 0x01, 0xff]);
    const rbsp = new BitReader().reset(data, 0, data.length, true);
    expect([rbsp.bits(16), rbsp.bits(8), rbsp.bits(8)]).toEqual([0, 1, 0xff]);
    expect(rbsp.overrun).toBe(false);
    const raw = new BitReader().reset(data);
    expect([raw.bits(16), raw.bits(8)]).toEqual([0, 3]);
  });

  it('drops 03 after each pair of zeros, including 00 00 03 00 00 03', () => {
    const data = Uint8Array.from([0, 0, 3, 0, 0, 3, 0x80]);
    const r = new BitReader().reset(data, 0, data.length, true);
    expect([r.bits(32), r.bits(8)]).toEqual([0, 0x80]);
    expect(r.overrun).toBe(false);
  });

  it('reads only its range, and flags reading past it instead of throwing', () => {
    const data = Uint8Array.from([0xff, 0x00, 0xff]);
    const r = new BitReader().reset(data, 1, 2);
    expect(r.bits(8)).toBe(0);
    expect(r.overrun).toBe(false);
    expect(r.bit()).toBe(0);
    expect(r.overrun).toBe(true);
  });

  it('flags an Exp-Golomb code of more than 31 leading zeros and one cut short', () => {
    const long = new BitReader().reset(new Uint8Array(8));
    expect(long.ue()).toBe(0);
    expect(long.overrun).toBe(true);
    const cut = new BitReader().reset(bytes('0001'));
    cut.bits(4);
    expect(cut.ue()).toBe(0);
    expect(cut.overrun).toBe(true);
  });

  it('starts afresh on reset', () => {
    const r = new BitReader().reset(new Uint8Array(0));
    r.bit();
    expect(r.overrun).toBe(true);
    r.reset(Uint8Array.from([0x80]));
    expect([r.bit(), r.overrun]).toEqual([1, false]);
  });
});
