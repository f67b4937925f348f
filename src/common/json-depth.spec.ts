import { exceedsJsonDepth, MAX_JSON_DEPTH } from './json-depth';

function nested(depth: number, open = '[', close = ']'): string {
  return open.repeat(depth) + close.repeat(depth);
}

describe('exceedsJsonDepth', () => {
  it('accepts nesting up to the limit and refuses one level more', () => {
    expect(exceedsJsonDepth(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBe(false);
    expect(exceedsJsonDepth(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe(true);
  });

  it('counts objects and arrays together', () => {
    const mixed = '{"a":[{"b":[{}]}]}';
    expect(JSON.parse(mixed)).toBeDefined();
    expect(exceedsJsonDepth(mixed, 5)).toBe(false);
    expect(exceedsJsonDepth(mixed, 4)).toBe(true);
  });

  it('counts depth, not the number of containers', () => {
    const wide = `[${Array.from({ length: 1000 }, () => '{}').join(',')}]`;
    expect(exceedsJsonDepth(wide, 2)).toBe(false);
  });

  it('ignores brackets inside strings, including after escaped quotes', () => {
    const text = JSON.stringify({ s: '[[[[{{{{ \\" [[[[', t: '"]]]]"' });
    expect(exceedsJsonDepth(text, 1)).toBe(false);
    expect(exceedsJsonDepth('["\\\\"]', 1)).toBe(false);
    expect(exceedsJsonDepth('["\\\\", [[]]]', 2)).toBe(true);
  });

  it('scans Buffers like strings, multi-byte characters included', () => {
    const text = JSON.stringify({ emoji: '📷[[[', deep: [[[1]]] });
    expect(exceedsJsonDepth(Buffer.from(text), 4)).toBe(false);
    expect(exceedsJsonDepth(Buffer.from(text), 3)).toBe(true);
  });

  it('refuses input deep enough to overflow the stack of recursive walkers', () => {
    const deep = nested(100_000, '{"a":', '}');
    expect(exceedsJsonDepth(deep, MAX_JSON_DEPTH)).toBe(true);
    expect(exceedsJsonDepth(Buffer.from(deep), MAX_JSON_DEPTH)).toBe(true);
  });

  it('agrees with the depth JSON.parse sees on valid documents', () => {
    for (let depth = 1; depth <= 10; depth++) {
      const text = nested(depth, '{"k":[', ']}');
      expect(JSON.parse(text)).toBeDefined();
      expect(exceedsJsonDepth(text, 2 * depth)).toBe(false);
      expect(exceedsJsonDepth(text, 2 * depth - 1)).toBe(true);
    }
  });
});
