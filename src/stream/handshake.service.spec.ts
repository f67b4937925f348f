import type { IncomingMessage } from 'node:http';
import { upgradeProblem } from './handshake.service';

function request(method: string, headers: Record<string, string>): IncomingMessage {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return { method, headers: lower } as unknown as IncomingMessage;
}

const GOOD = {
  Upgrade: 'websocket',
  'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Protocol': 'framegate.v1',
};

describe('upgradeProblem (the checks ws makes, made before authentication)', () => {
  it('passes a well-formed upgrade, with version 8 or 13, with or without a subprotocol', () => {
    expect(upgradeProblem(request('GET', GOOD))).toBeNull();
    expect(upgradeProblem(request('GET', { ...GOOD, 'Sec-WebSocket-Version': '8' }))).toBeNull();
    expect(upgradeProblem(request('GET', { ...GOOD, Upgrade: 'WebSocket' }))).toBeNull();
    expect(
      upgradeProblem(request('GET', { ...GOOD, 'Sec-WebSocket-Protocol': 'chat,\tframegate.v1' })),
    ).toBeNull();
    const { 'Sec-WebSocket-Protocol': _omitted, ...noProtocol } = GOOD;
    expect(upgradeProblem(request('GET', noProtocol))).toBeNull();
  });

  it.each([
    ['a POST', 'POST', {}, 405],
    ['another Upgrade', 'GET', { Upgrade: 'h2c' }, 400],
    ['a short key', 'GET', { 'Sec-WebSocket-Key': 'c2hvcnQ=' }, 400],
    ['a key with bad characters', 'GET', { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ!=' }, 400],
    ['version 12', 'GET', { 'Sec-WebSocket-Version': '12' }, 426],
    ['version 13.0', 'GET', { 'Sec-WebSocket-Version': '13.0' }, 426],
    ['a duplicated subprotocol', 'GET', { 'Sec-WebSocket-Protocol': 'a, a' }, 400],
    ['a subprotocol with a space inside', 'GET', { 'Sec-WebSocket-Protocol': 'a b' }, 400],
    ['an empty subprotocol', 'GET', { 'Sec-WebSocket-Protocol': 'a,,b' }, 400],
    ['an empty subprotocol header', 'GET', { 'Sec-WebSocket-Protocol': '' }, 400],
  ] as const)('refuses %s', (_name, method, change, status) => {
    expect(upgradeProblem(request(method, { ...GOOD, ...change }))?.status).toBe(status);
  });

  it('refuses a request without a key or a version, naming the versions it speaks', () => {
    const { 'Sec-WebSocket-Key': _key, ...noKey } = GOOD;
    expect(upgradeProblem(request('GET', noKey))?.status).toBe(400);
    const { 'Sec-WebSocket-Version': _version, ...noVersion } = GOOD;
    expect(upgradeProblem(request('GET', noVersion))).toEqual({
      status: 426,
      headers: { 'Sec-WebSocket-Version': '13, 8' },
      message: 'missing or unsupported Sec-WebSocket-Version header',
    });
  });
});
