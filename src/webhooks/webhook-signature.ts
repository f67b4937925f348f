import { createHmac } from 'node:crypto';

/** The headers of every delivery; receivers read them (docs/webhooks.md). */
export const WEBHOOK_ID_HEADER = 'Framegate-Webhook-Id';
export const WEBHOOK_SIGNATURE_HEADER = 'Framegate-Signature';

/**
 * `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, Stripe's scheme: the
 * timestamp is signed with the body, so a captured request cannot be replayed once the receiver's
 * tolerance has passed. docs/examples/verify-webhook.mjs is the receiving side.
 */
export function signatureHeader(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.`).update(body).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}
