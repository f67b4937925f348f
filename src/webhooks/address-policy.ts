import { isIPv4, isIPv6 } from 'node:net';

/**
 * Which IP addresses a webhook may connect to: public unicast only (unless WEBHOOK_ALLOW_PRIVATE).
 * A deny list of the special-purpose ranges of the IANA registries (RFC 6890 and successors);
 * IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address, so
 * `::ffff:127.0.0.1` is loopback like `127.0.0.1`.
 */

interface Range {
  bytes: Uint8Array;
  bits: number;
  what: string;
}

function range(cidr: string, what: string): Range {
  const [address = '', bits = ''] = cidr.split('/');
  const bytes = parseAddress(address);
  if (!bytes) {
    throw new Error(`bad range ${cidr}`);
  }
  return { bytes, bits: Number(bits), what: `${what} (${cidr})` };
}

const IPV4_REFUSED: Range[] = [
  range('0.0.0.0/8', '"this network"'),
  range('10.0.0.0/8', 'private'),
  range('100.64.0.0/10', 'shared address space (carrier-grade NAT)'),
  range('127.0.0.0/8', 'loopback'),
  range('169.254.0.0/16', 'link-local (cloud metadata)'),
  range('172.16.0.0/12', 'private'),
  range('192.0.0.0/24', 'IETF protocol assignments'),
  range('192.0.2.0/24', 'documentation'),
  range('192.88.99.0/24', '6to4 relay anycast'),
  range('192.168.0.0/16', 'private'),
  range('198.18.0.0/15', 'benchmarking'),
  range('198.51.100.0/24', 'documentation'),
  range('203.0.113.0/24', 'documentation'),
  range('224.0.0.0/4', 'multicast'),
  range('240.0.0.0/4', 'reserved'),
];

const IPV6_REFUSED: Range[] = [
  range('::/128', 'unspecified'),
  range('::1/128', 'loopback'),
  // The deprecated IPv4-compatible form: nothing legitimate is reached through it.
  range('::/96', 'IPv4-compatible'),
  range('64:ff9b:1::/48', 'local-use NAT64'),
  range('100::/64', 'discard-only'),
  range('2001::/23', 'IETF protocol assignments (Teredo included)'),
  range('2001:db8::/32', 'documentation'),
  range('fc00::/7', 'unique local (private)'),
  range('fe80::/10', 'link-local'),
  range('fec0::/10', 'site-local'),
  range('ff00::/8', 'multicast'),
];

/** IPv6 prefixes whose address embeds an IPv4 one, and where it sits (byte offset). */
const IPV4_CARRIERS: Array<{ range: Range; offset: number }> = [
  { range: range('::ffff:0:0/96', 'IPv4-mapped'), offset: 12 },
  { range: range('64:ff9b::/96', 'NAT64'), offset: 12 },
  { range: range('2002::/16', '6to4'), offset: 2 },
];

function inRange(bytes: Uint8Array, r: Range): boolean {
  if (bytes.length !== r.bytes.length) {
    return false;
  }
  const whole = r.bits >> 3;
  for (let i = 0; i < whole; i++) {
    if (bytes[i] !== r.bytes[i]) {
      return false;
    }
  }
  const rest = r.bits & 7;
  if (rest === 0) {
    return true;
  }
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((bytes[whole] ?? 0) & mask) === ((r.bytes[whole] ?? 0) & mask);
}

function parseIPv4(text: string): Uint8Array | null {
  if (!isIPv4(text)) {
    return null;
  }
  return Uint8Array.from(text.split('.').map(Number));
}

/** 16 bytes of an IPv6 address (with `::` and a trailing dotted quad); null with a zone id. */
function parseIPv6(text: string): Uint8Array | null {
  if (!isIPv6(text) || text.includes('%')) {
    return null;
  }
  let hex = text;
  const lastColon = text.lastIndexOf(':');
  const v4 = parseIPv4(text.slice(lastColon + 1));
  if (v4) {
    // "::ffff:127.0.0.1" is "::ffff:7f00:1".
    const word = (i: number): string => ((v4[i] << 8) | v4[i + 1]).toString(16);
    hex = `${text.slice(0, lastColon + 1)}${word(0)}:${word(2)}`;
  }
  const groups = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((g) => parseInt(g, 16));
  const [left = '', right] = hex.split('::');
  const before = groups(left);
  const after = right === undefined ? [] : groups(right);
  const zeros = right === undefined ? 0 : 8 - before.length - after.length;
  const words = [...before, ...new Array<number>(Math.max(zeros, 0)).fill(0), ...after];
  if (words.length !== 8 || words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) {
    return null;
  }
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

/** The bytes of an IPv4 (4) or IPv6 (16) address in its textual form, or null. */
export function parseAddress(text: string): Uint8Array | null {
  return parseIPv4(text) ?? parseIPv6(text);
}

function refusedIPv4(bytes: Uint8Array): string | null {
  return IPV4_REFUSED.find((r) => inRange(bytes, r))?.what ?? null;
}

/**
 * Why a webhook must not connect to this address (`loopback (127.0.0.0/8)`, ...), or null when it
 * is a public unicast address. Text that is no IP address is refused too.
 */
export function refusedAddressReason(address: string): string | null {
  const bytes = parseAddress(address);
  if (!bytes) {
    return 'not an IP address';
  }
  if (bytes.length === 4) {
    return refusedIPv4(bytes);
  }
  for (const carrier of IPV4_CARRIERS) {
    if (inRange(bytes, carrier.range)) {
      const v4 = refusedIPv4(bytes.subarray(carrier.offset, carrier.offset + 4));
      return v4 === null ? null : `${v4} inside ${carrier.range.what}`;
    }
  }
  return IPV6_REFUSED.find((r) => inRange(bytes, r))?.what ?? null;
}
