import helmet from 'helmet';

/**
 * Security headers on every HTTP response: `X-Content-Type-Options: nosniff`,
 * `Referrer-Policy: no-referrer`, a CSP that lets pages load only this origin's scripts, styles,
 * media and WebSocket (for the console and demo pages to come), and, only when the service itself
 * speaks TLS, `Strict-Transport-Security` (over plain HTTP a proxy terminates TLS and owns HSTS;
 * browsers ignore it on http:// anyway) and `upgrade-insecure-requests`.
 */
export function securityHeaders(tls: boolean): ReturnType<typeof helmet> {
  return helmet({
    contentSecurityPolicy: {
      useDefaults: true,
      directives: {
        'default-src': ["'self'"],
        'connect-src': ["'self'"],
        'img-src': ["'self'", 'data:', 'blob:'],
        'media-src': ["'self'", 'blob:'],
        'upgrade-insecure-requests': tls ? [] : null,
      },
    },
    referrerPolicy: { policy: 'no-referrer' },
    strictTransportSecurity: tls ? { maxAge: 31_536_000, includeSubDomains: true } : false,
  });
}
