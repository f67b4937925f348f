import { encodeMediaMessage, FLAG_KEY, readMediaHeader, Track } from '../protocol/media-header';
import type { KeyframeReason } from '../protocol/messages';
import { ChunkGate, KEYFRAME_HARD_LIMIT_INTERVALS, type VideoChunkCheck } from './chunk-gate';

/** A checker that refuses chunks whose first byte is 0xff (the codec checkers have their specs). */
const firstByteCheck: VideoChunkCheck = {
  check: (chunk) => (chunk[0] === 0xff ? 'garbage' : null),
};

function chunk(seq: number, pts: number, key: boolean, first = 0x01) {
  const message = encodeMediaMessage(
    Track.Video,
    seq,
    pts,
    Buffer.from([first, 2, 3]),
    key ? FLAG_KEY : 0,
  );
  const header = readMediaHeader(message);
  if (typeof header === 'string') {
    throw new Error(header);
  }
  return { message, header };
}

describe('ChunkGate', () => {
  const interval = 1_000;
  let asked: KeyframeReason[];
  const ask = (reason: KeyframeReason) => asked.push(reason);
  beforeEach(() => {
    asked = [];
  });

  function admit(gate: ChunkGate, seq: number, pts: number, key: boolean, first = 0x01) {
    const { message, header } = chunk(seq, pts, key, first);
    return gate.admit(message, header, ask);
  }

  it('refuses a delta as the first chunk of a session, and takes the key frame that follows', () => {
    const gate = new ChunkGate(firstByteCheck, null, interval, 0, 0);
    expect(admit(gate, 1, 0, false)).toBe('refused');
    expect(gate.refusal).toMatch(/first video chunk must be a key frame/);
    expect(asked).toEqual(['refused']);
    expect(admit(gate, 2, 100, true)).toBe('ok');
    expect(gate.keyframeWanted).toBeNull();
    expect(admit(gate, 3, 200, false)).toBe('ok');
  });

  it('after a refused chunk, refuses deltas until a key frame, naming the refused seq', () => {
    const gate = new ChunkGate(firstByteCheck, null, interval, 0, 0);
    expect(admit(gate, 1, 0, true)).toBe('ok');
    expect(admit(gate, 2, 100, false, 0xff)).toBe('refused');
    expect(gate.refusal).toBe('garbage');
    expect(admit(gate, 3, 200, false)).toBe('refused');
    expect(gate.refusal).toMatch(/key frame must follow the refused chunk 2/);
    // One request, not one per refused chunk.
    expect(asked).toEqual(['refused']);
    expect(gate.keyframeWanted).toBe('refused');
    expect(admit(gate, 4, 300, true)).toBe('ok');
    expect(admit(gate, 5, 400, false)).toBe('ok');
    expect(gate.keyframeWanted).toBeNull();
  });

  it('asks for a key frame past the interval, and refuses deltas past the hard limit', () => {
    const gate = new ChunkGate(firstByteCheck, null, interval, 0, 0);
    expect(admit(gate, 1, 0, true)).toBe('ok');
    expect(admit(gate, 2, interval + 1, false)).toBe('ok');
    expect(asked).toEqual(['interval']);
    const late = interval * KEYFRAME_HARD_LIMIT_INTERVALS + 1;
    expect(admit(gate, 3, late, false)).toBe('refused');
    expect(gate.refusal).toMatch(/no key frame for \d+ ms/);
    expect(admit(gate, 4, late + 100, true)).toBe('ok');
    expect(admit(gate, 5, late + 200, false)).toBe('ok');
  });

  it('a resumed session continues its deltas and is asked for a key frame', () => {
    const gate = new ChunkGate(firstByteCheck, null, interval, 10, 900);
    gate.resumed(ask);
    expect(asked).toEqual(['resume']);
    expect(gate.keyframeWanted).toBe('resume');
    expect(admit(gate, 11, 1_000, false)).toBe('ok');
    expect(admit(gate, 12, 1_100, true)).toBe('ok');
    expect(gate.keyframeWanted).toBeNull();
  });

  it('checks audio packets with the audio checker, and leaves PCM alone', () => {
    const opus = { check: (p: Buffer) => (p.length < 2 ? 'short packet' : null) };
    const gate = new ChunkGate(firstByteCheck, opus, interval, 0, 0);
    const short = encodeMediaMessage(Track.Audio, 1, 0, Buffer.from([1]));
    const header = readMediaHeader(short);
    if (typeof header === 'string') {
      throw new Error(header);
    }
    expect(gate.admit(short, header, ask)).toBe('refused');
    expect(gate.refusal).toBe('short packet');
    expect(asked).toEqual([]);
    const pcmGate = new ChunkGate(firstByteCheck, null, interval, 0, 0);
    expect(pcmGate.admit(short, header, ask)).toBe('ok');
  });
});
