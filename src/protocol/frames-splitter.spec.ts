import fc from 'fast-check';
import { FramesSplitter } from './frames-splitter';
import { MEDIA_HEADER_BYTES } from './media-header';

function framed(messages: Buffer[]): Buffer {
  return Buffer.concat(
    messages.flatMap((m) => {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(m.length);
      return [length, m];
    }),
  );
}

/** Cuts `body` at the given points and feeds the pieces one by one. */
function split(body: Buffer, cuts: number[], max = 1024) {
  const splitter = new FramesSplitter(max);
  const out: Buffer[] = [];
  const points = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const to of [...points, body.length]) {
    const problem = splitter.push(body.subarray(from, to), (m) => {
      out.push(Buffer.from(m));
      return true;
    });
    if (problem) {
      return { out, problem };
    }
    from = to;
  }
  return { out, problem: splitter.end() };
}

const message = fc
  .uint8Array({ minLength: MEDIA_HEADER_BYTES + 1, maxLength: 300 })
  .map((a) => Buffer.from(a));

describe('FramesSplitter', () => {
  it('yields the same messages however the body is cut into chunks', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 8 }), fc.array(fc.nat()), (messages, cuts) => {
        const { out, problem } = split(framed(messages), cuts);
        expect(problem).toBeNull();
        expect(out.length).toBe(messages.length);
        out.forEach((m, i) => expect(m.equals(messages[i])).toBe(true));
      }),
    );
  });

  it('refuses a length over the limit at its prefix, before buffering the message', () => {
    const body = framed([Buffer.alloc(20, 1), Buffer.alloc(2000, 2)]);
    const { out, problem } = split(body.subarray(0, 30), [25, 26]);
    expect(out).toHaveLength(1);
    expect(problem).toEqual({ kind: 'too_large', at: 24, maxBytes: 1024 });
  });

  it('refuses an empty message and a body that ends inside a prefix or a message', () => {
    expect(split(framed([Buffer.alloc(MEDIA_HEADER_BYTES)]), []).problem).toEqual({
      kind: 'empty',
      at: 0,
    });
    const body = framed([Buffer.alloc(20, 1), Buffer.alloc(20, 2)]);
    expect(split(body.subarray(0, 26), [25]).problem).toEqual({
      kind: 'truncated_prefix',
      at: 24,
    });
    expect(split(body.subarray(0, 40), [30]).problem).toEqual({
      kind: 'truncated_message',
      at: 24,
    });
  });

  it('stops as soon as the consumer says so', () => {
    const splitter = new FramesSplitter(1024);
    const seen: number[] = [];
    const body = framed([Buffer.alloc(20, 1), Buffer.alloc(20, 2), Buffer.alloc(20, 3)]);
    splitter.push(body, (m) => {
      seen.push(m[0]);
      return seen.length < 2;
    });
    expect(seen).toEqual([1, 2]);
  });
});
