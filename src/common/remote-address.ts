import type { IncomingMessage } from 'node:http';
import proxyaddr from 'proxy-addr';
import type { AppConfig } from '../config/config';

export type TrustFn = (address: string, hop: number) => boolean;

/** TRUST_PROXY as a predicate, with the same meaning as Express' `trust proxy` setting. */
export function compileTrust(setting: AppConfig['TRUST_PROXY']): TrustFn {
  if (setting === true) {
    return () => true;
  }
  if (setting === false) {
    return () => false;
  }
  if (typeof setting === 'number') {
    return (_address, hop) => hop < setting;
  }
  return proxyaddr.compile(setting);
}

/**
 * The client's address: the socket peer, or the nearest untrusted address in X-Forwarded-For when
 * the peer is a trusted proxy. Used for HTTP requests and WebSocket upgrades alike.
 */
export function remoteAddressOf(req: IncomingMessage, trust: TrustFn): string | null {
  if (!req.socket.remoteAddress) {
    return null;
  }
  const address = proxyaddr(req, trust);
  // IPv4 clients of a dual-stack listener appear as ::ffff:a.b.c.d.
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
