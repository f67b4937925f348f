import fc from 'fast-check';
import { parseAddress, refusedAddressReason } from './address-policy';

describe('webhook address policy', () => {
  it.each([
    ['0.0.0.0', /this network/],
    ['10.0.0.1', /private/],
    ['100.64.0.1', /carrier-grade NAT/],
    ['127.0.0.1', /loopback/],
    ['127.255.255.254', /loopback/],
    ['169.254.169.254', /link-local/],
    ['172.16.0.1', /private/],
    ['172.31.255.255', /private/],
    ['192.0.0.8', /IETF/],
    ['192.0.2.1', /documentation/],
    ['192.168.0.1', /private/],
    ['198.18.0.1', /benchmarking/],
    ['224.0.0.1', /multicast/],
    ['255.255.255.255', /reserved/],
    ['::', /unspecified/],
    ['::1', /loopback/],
    ['::ffff:127.0.0.1', /loopback .* inside IPv4-mapped/],
    ['::ffff:7f00:1', /loopback .* inside IPv4-mapped/],
    ['::ffff:169.254.169.254', /link-local .* inside IPv4-mapped/],
    ['0:0:0:0:0:ffff:10.0.0.1', /private .* inside IPv4-mapped/],
    ['::127.0.0.1', /IPv4-compatible/],
    ['64:ff9b::192.168.1.1', /private .* inside NAT64/],
    ['64:ff9b:1::1', /local-use NAT64/],
    ['2002:7f00:1::', /loopback .* inside 6to4/],
    ['2002:a9fe:a9fe::1', /link-local .* inside 6to4/],
    ['2001:db8::1', /documentation/],
    ['2001::1', /Teredo/],
    ['fc00::1', /unique local/],
    ['fd12:3456:789a::1', /unique local/],
    ['fe80::1', /link-local/],
    ['febf:ffff::1', /link-local/],
    ['fec0::1', /site-local/],
    ['ff02::1', /multicast/],
    ['100::1', /discard/],
    ['fe80::1%eth0', /not an IP address/],
    ['localhost', /not an IP address/],
    ['', /not an IP address/],
  ])('refuses %s', (address, why) => {
    expect(refusedAddressReason(address)).toMatch(why);
  });

  it.each([
    '1.1.1.1',
    '8.8.8.8',
    '93.184.215.14',
    '172.15.255.255',
    '172.32.0.0',
    '100.63.255.255',
    '100.128.0.0',
    '169.253.255.255',
    '192.169.0.1',
    '223.255.255.255',
    '2606:4700:4700::1111',
    '2a00:1450:4001:80b::200e',
    '::ffff:8.8.8.8',
    '64:ff9b::8.8.8.8',
    '2002:0808:0808::1',
    '2001:4860:4860::8888',
  ])('allows the public address %s', (address) => {
    expect(refusedAddressReason(address)).toBeNull();
  });

  it('parses IPv6 forms to the same 16 bytes', () => {
    const bytes = (a: string) => Array.from(parseAddress(a) ?? []);
    expect(bytes('::ffff:127.0.0.1')).toEqual(bytes('::ffff:7f00:1'));
    expect(bytes('::ffff:127.0.0.1')).toEqual(bytes('0:0:0:0:0:ffff:7f00:0001'));
    expect(bytes('1::')).toEqual([0, 1, ...new Array<number>(14).fill(0)]);
    expect(bytes('::1')).toEqual([...new Array<number>(15).fill(0), 1]);
    expect(bytes('1:2:3:4:5:6:7:8')).toEqual([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
    expect(parseAddress('1:2:3:4:5:6:7:8:9')).toBeNull();
  });

  it('judges every IPv4 address and its IPv4-mapped IPv6 form alike', () => {
    fc.assert(
      fc.property(fc.ipV4(), (v4) => {
        const mapped = refusedAddressReason(`::ffff:${v4}`);
        const plain = refusedAddressReason(v4);
        expect(mapped === null).toBe(plain === null);
        const [a = 0, b = 0, c = 0, d = 0] = v4.split('.').map(Number);
        const hex = `::ffff:${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
        expect(refusedAddressReason(hex) === null).toBe(plain === null);
      }),
    );
  });

  it('refuses every address of the private, loopback and link-local ranges', () => {
    const octet = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(octet, octet, octet, (x, y, z) => {
        expect(refusedAddressReason(`10.${x}.${y}.${z}`)).toMatch(/private/);
        expect(refusedAddressReason(`127.${x}.${y}.${z}`)).toMatch(/loopback/);
        expect(refusedAddressReason(`169.254.${y}.${z}`)).toMatch(/link-local/);
        expect(refusedAddressReason(`172.${16 + (x % 16)}.${y}.${z}`)).toMatch(/private/);
        expect(refusedAddressReason(`192.168.${y}.${z}`)).toMatch(/private/);
      }),
    );
  });
});
