// Verifies a framegate webhook (docs/webhooks.md). Node.js 18+, no dependencies: copy this file.
//
//   import { verifyFramegateSignature } from './verify-webhook.mjs';
//
//   // rawBody: the request body exactly as received (a Buffer or string), before any JSON parsing.
//   if (!verifyFramegateSignature(rawBody, req.headers['framegate-signature'], SECRET)) {
//     res.writeHead(400).end();
//     return;
//   }
//   const event = JSON.parse(rawBody); // { id, event, createdAt, data }
//   // Deliveries may repeat: act once per event.id (also in the Framegate-Webhook-Id header).
//
// framegate signs `<t>.<raw body>` with HMAC-SHA256 and the webhook's secret, and sends
// `Framegate-Signature: t=<unix seconds>,v1=<hex digest>`. A fresh `t` is signed at every attempt.

import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * True when `header` carries a valid signature of `rawBody` under `secret`, made at most
 * `toleranceSeconds` ago (or ahead, for clock skew): a captured request cannot be replayed later.
 *
 * @param {Buffer | string} rawBody the body as received, byte for byte
 * @param {string | undefined} header the Framegate-Signature header
 * @param {string} secret the webhook secret given with the job
 * @param {number} [toleranceSeconds=300]
 * @returns {boolean}
 */
export function verifyFramegateSignature(rawBody, header, secret, toleranceSeconds = 300) {
  if (typeof header !== 'string' || typeof secret !== 'string' || secret.length === 0) {
    return false;
  }
  let timestamp = null;
  const signatures = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) {
      continue;
    }
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && /^\d{1,12}$/.test(value)) {
      timestamp = Number(value);
    } else if (key === 'v1' && /^[0-9a-f]{64}$/.test(value)) {
      signatures.push(Buffer.from(value, 'hex'));
    }
  }
  if (timestamp === null || signatures.length === 0) {
    return false;
  }
  if (Math.abs(Math.floor(Date.now() / 1000) - timestamp) > toleranceSeconds) {
    return false;
  }
  const expected = createHmac('sha256', secret)
    .update(`${timestamp}.`)
    .update(typeof rawBody === 'string' ? Buffer.from(rawBody, 'utf8') : rawBody)
    .digest();
  // Constant-time comparison: the time taken tells an attacker nothing about the right digest.
  return signatures.some((candidate) => timingSafeEqual(candidate, expected));
}
