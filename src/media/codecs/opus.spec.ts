import fc from 'fast-check';
import { BUNDLED, oggPackets, runTool } from '../../../test/support/bitstreams';
import { createOpusChecker, parseOpusHead } from './opus';

/** libopus packets of a one-second tone in Ogg: [OpusHead, OpusTags, audio…]. */
async function encodeOpus(channels: number, args: string[]): Promise<Buffer[]> {
  const ogg = await runTool(BUNDLED.ffmpeg, [
    ...['-hide_banner', '-loglevel', 'error', '-nostdin', '-f', 'lavfi'],
    ...['-i', `sine=frequency=440:duration=1,aformat=sample_rates=48000`, '-ac', String(channels)],
    ...['-c:a', 'libopus', ...args, '-f', 'ogg', 'pipe:1'],
  ]);
  return oggPackets(ogg);
}

const TOC = {
  /** SILK wideband 20 ms, mono. */
  silk20: 9 << 3,
  /** CELT fullband 2.5 ms. */
  celt2_5: 28 << 3,
  /** CELT fullband 20 ms. */
  celt20: 31 << 3,
};
const packet = (...bytes: number[]) => Buffer.from(bytes);
const filled = (head: number[], size: number) =>
  Buffer.concat([Buffer.from(head), Buffer.alloc(size, 0x5a)]);

describe('parseOpusHead', () => {
  let stereo: Buffer;
  let surround: Buffer;

  beforeAll(async () => {
    [[stereo], [surround]] = await Promise.all([encodeOpus(2, []), encodeOpus(6, [])]);
  });

  it('reads the OpusHead libopus writes for stereo', () => {
    expect(parseOpusHead(stereo)).toMatchObject({
      version: 1,
      channels: 2,
      preSkip: 312,
      inputSampleRate: 48000,
      outputGain: 0,
      mappingFamily: 0,
      streamCount: 1,
      coupledCount: 1,
    });
  });

  it('reads a 5.1 head (mapping family 1, 4 streams), which the checker does not take', () => {
    const head = parseOpusHead(surround);
    expect(head).toMatchObject({ channels: 6, mappingFamily: 1, streamCount: 4, coupledCount: 2 });
    expect(Array.from(head.mapping)).toHaveLength(6);
    expect(() => createOpusChecker(head)).toThrow(
      'Opus with 4 streams per packet (6 channels) is not supported: send mono or stereo',
    );
  });

  it('refuses heads that are not OpusHead version 1 with 1 or 2 channels in family 0', () => {
    const edit = (at: number, value: number) => {
      const head = Buffer.from(stereo);
      head[at] = value;
      return head;
    };
    expect(() => parseOpusHead(stereo.subarray(0, 18))).toThrow(
      'an OpusHead has at least 19 bytes, not 18',
    );
    expect(() => parseOpusHead(edit(0, 0x6f))).toThrow('does not start with "OpusHead"');
    expect(() => parseOpusHead(edit(8, 0))).toThrow('OpusHead version 0 is not 1');
    expect(() => parseOpusHead(edit(8, 16))).toThrow('OpusHead version 16 is not 1');
    expect(parseOpusHead(edit(8, 2)).version).toBe(2);
    expect(() => parseOpusHead(edit(9, 0))).toThrow('the OpusHead has no channels');
    expect(() => parseOpusHead(edit(9, 3))).toThrow('mapping family 0 has 1 or 2 channels, not 3');
    expect(() => parseOpusHead(edit(18, 2))).toThrow(
      'Opus channel mapping family 2 is not supported',
    );
  });

  it('refuses channel mapping tables cut short or out of range', () => {
    const edit = (at: number, value: number) => {
      const head = Buffer.from(surround);
      head[at] = value;
      return head;
    };
    expect(() => parseOpusHead(surround.subarray(0, 26))).toThrow(
      'channel mapping table for 6 channels is cut short',
    );
    expect(() => parseOpusHead(edit(19, 0))).toThrow(
      'OpusHead stream count 0, coupled 2: out of range',
    );
    expect(() => parseOpusHead(edit(20, 5))).toThrow(
      'OpusHead stream count 4, coupled 5: out of range',
    );
    expect(() => parseOpusHead(edit(21, 6))).toThrow(
      'OpusHead maps channel 0 to 6, beyond its 6 decoded channels',
    );
    expect(parseOpusHead(edit(21, 255)).mapping[0]).toBe(255);
    expect(() => parseOpusHead(edit(9, 9))).toThrow('mapping family 1 has 1 to 8 channels, not 9');
  });
});

describe('createOpusChecker', () => {
  const checker = createOpusChecker();

  it.each([
    ['mono, 20 ms VBR', 1, []],
    ['stereo, 60 ms (code 3 VBR)', 2, ['-frame_duration', '60', '-b:a', '64k']],
    ['mono, 120 ms (6 SILK frames)', 1, ['-frame_duration', '120', '-b:a', '24k']],
    ['stereo, 40 ms CBR (code 3 CBR)', 2, ['-vbr', 'off', '-frame_duration', '40']],
    ['stereo, 100 ms', 2, ['-frame_duration', '100']],
    ['stereo, 2.5 ms low delay (CELT)', 2, ['-frame_duration', '2.5', '-application', 'lowdelay']],
  ])('accepts every libopus packet: %s', async (_name, channels, args) => {
    const [head, , ...audio] = await encodeOpus(channels, args);
    const withHead = createOpusChecker(parseOpusHead(head));
    expect(audio.length).toBeGreaterThan(5);
    expect(audio.map((p) => withHead.check(p))).toEqual(audio.map(() => null));
  });

  it('answers every prefix of real packets without throwing', async () => {
    const [, , ...audio] = await encodeOpus(2, ['-frame_duration', '60']);
    for (const p of audio.slice(0, 5)) {
      for (let n = 0; n <= p.length; n++) {
        const verdict = checker.check(p.subarray(0, n));
        expect(verdict === null || typeof verdict === 'string').toBe(true);
      }
    }
    expect(checker.check(audio[0].subarray(0, 0))).toBe('empty Opus packet');
  });

  it('takes code 0, 1 and 2 packets within RFC 6716 §3.2 and refuses the rest', () => {
    expect(checker.check(packet(TOC.silk20))).toBeNull(); // one empty frame (DTX)
    expect(checker.check(filled([TOC.silk20], 1275))).toBeNull();
    expect(checker.check(filled([TOC.silk20], 1276))).toBe(
      'an Opus frame of 1276 bytes (at most 1275)',
    );
    expect(checker.check(filled([TOC.silk20 | 1], 40))).toBeNull();
    expect(checker.check(filled([TOC.silk20 | 1], 41))).toBe(
      'an Opus code 1 packet holds two frames of equal size, not 41 bytes',
    );
    expect(checker.check(filled([TOC.silk20 | 1], 2552))).toBe(
      'an Opus frame of 1276 bytes (at most 1275)',
    );
    expect(checker.check(filled([TOC.silk20 | 2, 10], 30))).toBeNull();
    expect(checker.check(filled([TOC.silk20 | 2, 252, 1], 256))).toBeNull(); // 252 + 4 × 1
    expect(checker.check(packet(TOC.silk20 | 2))).toBe(
      'an Opus code 2 packet ends inside its first frame length',
    );
    expect(checker.check(packet(TOC.silk20 | 2, 253))).toBe(
      'an Opus code 2 packet ends inside its first frame length',
    );
    expect(checker.check(filled([TOC.silk20 | 2, 40], 39))).toBe(
      "an Opus code 2 packet's first frame of 40 bytes overruns it (41 bytes)",
    );
    expect(checker.check(filled([TOC.silk20 | 2, 0], 1276))).toBe(
      'an Opus frame of 1276 bytes (at most 1275)',
    );
  });

  it('refuses code 3 packets with a bad frame count or longer than 120 ms', () => {
    expect(checker.check(packet(TOC.silk20 | 3))).toBe(
      'an Opus code 3 packet ends before its frame count',
    );
    expect(checker.check(packet(TOC.silk20 | 3, 0))).toBe(
      'an Opus code 3 packet of 0 frames of 20 ms (1 frame to 120 ms)',
    );
    expect(checker.check(filled([TOC.silk20 | 3, 6], 60))).toBeNull();
    expect(checker.check(filled([TOC.silk20 | 3, 7], 70))).toBe(
      'an Opus code 3 packet of 7 frames of 20 ms (1 frame to 120 ms)',
    );
    expect(checker.check(filled([TOC.celt2_5 | 3, 48], 48))).toBeNull();
    expect(checker.check(filled([TOC.celt2_5 | 3, 49], 49))).toBe(
      'an Opus code 3 packet of 49 frames of 2.5 ms (1 frame to 120 ms)',
    );
  });

  it('refuses code 3 CBR packets whose frames are not of equal size', () => {
    expect(checker.check(filled([TOC.celt20 | 3, 3], 31))).toBe(
      'an Opus CBR code 3 packet: 31 bytes do not make 3 frames of equal size',
    );
    expect(checker.check(filled([TOC.celt20 | 3, 2], 2552))).toBe(
      'an Opus frame of 1276 bytes (at most 1275)',
    );
  });

  it('reads code 3 padding (255 is 254 more bytes) and refuses padding beyond the packet', () => {
    // 2 CBR frames of 5 bytes, then 254 + 1 bytes of padding.
    expect(checker.check(filled([TOC.celt20 | 3, 0x42, 255, 1], 10 + 255))).toBeNull();
    expect(checker.check(filled([TOC.celt20 | 3, 0x42, 255, 1], 10 + 254))).toBe(
      'an Opus CBR code 3 packet: 9 bytes do not make 2 frames of equal size',
    );
    expect(checker.check(packet(TOC.celt20 | 3, 0x42, 255))).toBe(
      'an Opus code 3 packet ends inside its padding length',
    );
    expect(checker.check(filled([TOC.celt20 | 3, 0x42, 20], 10))).toBe(
      "an Opus code 3 packet's padding of 20 bytes overruns it (13 bytes)",
    );
  });

  it('refuses code 3 VBR lengths beyond the packet or cut off', () => {
    // 3 frames: lengths 10 and 300 (2 bytes: 252 + 4 × 12), the last takes what is left.
    expect(checker.check(filled([TOC.celt20 | 3, 0x83, 10, 252, 12], 310 + 7))).toBeNull();
    expect(checker.check(filled([TOC.celt20 | 3, 0x83, 10, 252, 12], 309))).toBe(
      "an Opus VBR code 3 packet's frame lengths (310 bytes) overrun it (314 bytes)",
    );
    expect(checker.check(packet(TOC.celt20 | 3, 0x83, 10, 252))).toBe(
      'an Opus VBR code 3 packet ends inside frame length 2 of 2',
    );
    // With padding: the lengths may not reach into it.
    expect(checker.check(filled([TOC.celt20 | 3, 0xc2, 5, 10], 10))).toBe(
      "an Opus VBR code 3 packet's frame lengths (10 bytes) overrun it (14 bytes)",
    );
  });

  it('refuses empty packets and packets over 48 × 1275 bytes', () => {
    expect(checker.check(Buffer.alloc(0))).toBe('empty Opus packet');
    expect(checker.check(filled([TOC.celt2_5 | 3, 48], 48 * 1274))).toBeNull();
    expect(checker.check(filled([TOC.celt2_5 | 3, 48], 61200 - 1))).toBe(
      'an Opus packet of 61201 bytes (at most 61200)',
    );
  });

  it('answers arbitrary bytes with a string or null, never an exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
        const verdict = checker.check(Buffer.from(bytes));
        return verdict === null || typeof verdict === 'string';
      }),
      { numRuns: 3000 },
    );
  });
});
