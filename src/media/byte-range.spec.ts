import fc from 'fast-check';
import { parseRange } from './byte-range';

describe('parseRange', () => {
  const size = 1000;

  it('serves the full file when there is no Range header', () => {
    expect(parseRange(undefined, size)).toEqual({ kind: 'full', reason: 'absent' });
  });

  it.each([
    ['bytes=0-99', 0, 99],
    ['bytes=100-199', 100, 199],
    ['bytes=0-', 0, 999],
    ['bytes=990-', 990, 999],
    ['bytes=999-999', 999, 999],
    ['bytes=-100', 900, 999],
    ['bytes=-1', 999, 999],
  ])('selects one range for %s', (header, start, end) => {
    expect(parseRange(header, size)).toEqual({ kind: 'partial', start, end });
  });

  it('clamps a last position beyond the end to the last byte', () => {
    expect(parseRange('bytes=500-5000', size)).toEqual({ kind: 'partial', start: 500, end: 999 });
  });

  it('selects the whole file for a suffix longer than the file', () => {
    expect(parseRange('bytes=-5000', size)).toEqual({ kind: 'partial', start: 0, end: 999 });
  });

  it('accepts any case of the unit, optional whitespace and empty list elements', () => {
    expect(parseRange('Bytes=0-9', size)).toEqual({ kind: 'partial', start: 0, end: 9 });
    expect(parseRange('BYTES = 0-9 ', size)).toEqual({ kind: 'partial', start: 0, end: 9 });
    expect(parseRange('bytes=, 0-9 ,', size)).toEqual({ kind: 'partial', start: 0, end: 9 });
  });

  it('accepts leading zeros', () => {
    expect(parseRange('bytes=0010-0019', size)).toEqual({ kind: 'partial', start: 10, end: 19 });
  });

  it.each(['bytes=1000-', 'bytes=1000-1001', 'bytes=5000-6000', 'bytes=-0'])(
    'is unsatisfiable for %s',
    (header) => {
      expect(parseRange(header, size)).toEqual({ kind: 'unsatisfiable' });
    },
  );

  it.each([
    'bytes',
    'bytes=',
    'bytes=,',
    'bytes=abc',
    'bytes=1-a',
    'bytes=--1',
    'bytes=-',
    'bytes=5-4',
    'bytes=1.5-2',
    'bytes=+1-2',
    'bytes=0x10-0x20',
    'bytes=1 - 2',
    'items=0-9',
    'bytes=0-9;x',
    '=0-9',
    '',
  ])('ignores the malformed header %j as if it were absent', (header) => {
    expect(parseRange(header, size)).toEqual({ kind: 'full', reason: 'malformed' });
  });

  it('ignores a header that is too long to be genuine', () => {
    expect(parseRange(`bytes=0-${'9'.repeat(2000)}`, size)).toEqual({
      kind: 'full',
      reason: 'malformed',
    });
  });

  it('serves the full file for several ranges, and ignores them when one is malformed', () => {
    expect(parseRange('bytes=0-9,20-29', size)).toEqual({ kind: 'full', reason: 'multiple' });
    expect(parseRange('bytes=0-9, -5', size)).toEqual({ kind: 'full', reason: 'multiple' });
    expect(parseRange('bytes=0-9,x', size)).toEqual({ kind: 'full', reason: 'malformed' });
  });

  it('compares positions beyond Number.MAX_SAFE_INTEGER exactly', () => {
    const huge = '9'.repeat(40);
    expect(parseRange(`bytes=${huge}-`, size)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange(`bytes=0-${huge}`, size)).toEqual({ kind: 'partial', start: 0, end: 999 });
    expect(parseRange(`bytes=-${huge}`, size)).toEqual({ kind: 'partial', start: 0, end: 999 });
    // Equal as doubles, but the last position is before the first: invalid, so ignored.
    expect(parseRange('bytes=99999999999999999999-99999999999999999998', size)).toEqual({
      kind: 'full',
      reason: 'malformed',
    });
  });

  it('finds no satisfiable range in an empty file', () => {
    for (const header of ['bytes=0-', 'bytes=0-0', 'bytes=-1', 'bytes=-0']) {
      expect(parseRange(header, 0)).toEqual({ kind: 'unsatisfiable' });
    }
    expect(parseRange(undefined, 0)).toEqual({ kind: 'full', reason: 'absent' });
    expect(parseRange('bytes=x', 0)).toEqual({ kind: 'full', reason: 'malformed' });
  });

  it('always selects bytes inside the file', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1e9 }),
        fc.option(fc.nat({ max: 2e9 }), { nil: undefined }),
        fc.option(fc.nat({ max: 2e9 }), { nil: undefined }),
        (n, a, b) => {
          const header = `bytes=${a ?? ''}-${b ?? ''}`;
          const r = parseRange(header, n);
          if (r.kind === 'partial') {
            expect(r.start).toBeGreaterThanOrEqual(0);
            expect(r.end).toBeGreaterThanOrEqual(r.start);
            expect(r.end).toBeLessThan(n);
          }
        },
      ),
    );
  });
});
