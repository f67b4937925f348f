/**
 * What a `Range` request header asks of a representation of `size` bytes (RFC 9110 section 14):
 * - `full`: serve the whole representation with 200. The header is absent, not in `bytes`, not
 *   valid (a recipient may ignore an invalid ranges-specifier, section 14.2), or asks for several
 *   ranges: answering those with multipart/byteranges buys video players nothing (they ask for one
 *   range at a time) and a server may always ignore Range.
 * - `partial`: serve bytes `start..end` (inclusive) with 206.
 * - `unsatisfiable`: 416, with a `Content-Range` that names only the size.
 */
export type ByteRange =
  | { kind: 'full'; reason: 'absent' | 'malformed' | 'multiple' }
  | { kind: 'partial'; start: number; end: number }
  | { kind: 'unsatisfiable' };

const INT_RANGE = /^(\d+)-(\d*)$/;
const SUFFIX_RANGE = /^-(\d+)$/;
/** Nothing a client needs comes close; longer headers are not worth parsing. */
const MAX_HEADER_LENGTH = 1024;

/**
 * Parses a `Range` header against a representation of `size` bytes. Positions are compared as
 * BigInts, so absurdly long numbers are judged exactly rather than after rounding.
 */
export function parseRange(header: string | undefined, size: number): ByteRange {
  if (header === undefined) {
    return { kind: 'full', reason: 'absent' };
  }
  const eq = header.indexOf('=');
  if (eq === -1 || header.length > MAX_HEADER_LENGTH) {
    return { kind: 'full', reason: 'malformed' };
  }
  // Range units are case-insensitive (section 14.1); the list rule allows empty elements and OWS.
  if (header.slice(0, eq).trim().toLowerCase() !== 'bytes') {
    return { kind: 'full', reason: 'malformed' };
  }
  const specs = header
    .slice(eq + 1)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length === 0) {
    return { kind: 'full', reason: 'malformed' };
  }
  const parsed: Array<{ first: bigint; last: bigint | null } | { suffix: bigint }> = [];
  for (const spec of specs) {
    const int = INT_RANGE.exec(spec);
    if (int) {
      const first = BigInt(int[1]);
      const last = int[2] === '' ? null : BigInt(int[2]);
      if (last !== null && last < first) {
        return { kind: 'full', reason: 'malformed' };
      }
      parsed.push({ first, last });
      continue;
    }
    const suffix = SUFFIX_RANGE.exec(spec);
    if (!suffix) {
      return { kind: 'full', reason: 'malformed' };
    }
    parsed.push({ suffix: BigInt(suffix[1]) });
  }
  if (parsed.length > 1) {
    return { kind: 'full', reason: 'multiple' };
  }
  const spec = parsed[0];
  const total = BigInt(size);
  // An empty representation has no byte to select: every range is unsatisfiable.
  if (total === 0n) {
    return { kind: 'unsatisfiable' };
  }
  if ('suffix' in spec) {
    if (spec.suffix === 0n) {
      return { kind: 'unsatisfiable' };
    }
    const start = spec.suffix >= total ? 0n : total - spec.suffix;
    return { kind: 'partial', start: Number(start), end: size - 1 };
  }
  if (spec.first >= total) {
    return { kind: 'unsatisfiable' };
  }
  const end = spec.last === null || spec.last >= total ? total - 1n : spec.last;
  return { kind: 'partial', start: Number(spec.first), end: Number(end) };
}
