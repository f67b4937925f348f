import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { z } from 'zod';
import { AppError } from '../common/app-error';
import { withDeadline } from '../common/deadline';
import { ErrorCode } from '../common/error-code';
import type { AppConfig } from '../config/config';
import { refusedAddressReason } from './address-policy';

/** Longest webhook URL accepted. */
export const MAX_WEBHOOK_URL_LENGTH = 2048;
/** How long validation waits for DNS before accepting the name (each attempt checks it again). */
const VALIDATION_DNS_TIMEOUT_MS = 5_000;

/** What a webhook URL may point at. */
export interface WebhookUrlPolicy {
  /** `http:` allowed besides `https:`. */
  allowHttp: boolean;
  /** Loopback, private, link-local and other non-public addresses allowed. */
  allowPrivate: boolean;
}

/**
 * The policy in force: WEBHOOK_ALLOW_HTTP and WEBHOOK_ALLOW_PRIVATE, each allowed by default
 * outside production only (development and tests run receivers on loopback; production refuses
 * them unless an operator says otherwise).
 */
export function webhookUrlPolicy(config: AppConfig): WebhookUrlPolicy {
  const notProduction = config.NODE_ENV !== 'production';
  return {
    allowHttp: config.WEBHOOK_ALLOW_HTTP ?? notProduction,
    allowPrivate: config.WEBHOOK_ALLOW_PRIVATE ?? notProduction,
  };
}

/** Every address a host name resolves to (getaddrinfo, as Node's own connections use). */
export type Lookup = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

export const systemLookup: Lookup = (hostname) =>
  dnsLookup(hostname, { all: true, verbatim: true });

/** A URL or destination the policy refuses; the message says why, for the caller and the audit. */
export class WebhookUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookUrlError';
  }
}

/** The rules that need no configuration: an absolute http(s) URL with a host and no credentials. */
export function parseWebhookUrl(text: string): URL {
  if (text.length > MAX_WEBHOOK_URL_LENGTH) {
    throw new WebhookUrlError(`must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new WebhookUrlError('must be an absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new WebhookUrlError('must be an https:// URL');
  }
  if (url.username !== '' || url.password !== '') {
    // They would be stored and shown with the URL; the signature authenticates framegate instead.
    throw new WebhookUrlError('must not carry credentials (user:password@)');
  }
  if (url.hostname === '') {
    throw new WebhookUrlError('must name a host');
  }
  return url;
}

/** The host of a URL as a connection takes it: IPv6 literals without their brackets. */
export function hostOf(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

/** The `webhook` of a job: where to POST and the secret to sign with (never returned by any API). */
export const webhookSpecSchema = z.strictObject({
  url: z
    .string()
    .max(MAX_WEBHOOK_URL_LENGTH)
    .superRefine((value, ctx) => {
      try {
        parseWebhookUrl(value);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    }),
  /** HMAC-SHA256 key of the signatures; printable ASCII, so every receiver reads the same bytes. */
  secret: z
    .string()
    .min(32)
    .max(256)
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
});
export type WebhookSpec = z.output<typeof webhookSpecSchema>;

/** Where one delivery attempt connects: the URL, and the checked address it is pinned to. */
export interface WebhookTarget {
  url: URL;
  host: string;
  address: string;
  family: 4 | 6;
}

/**
 * Checks a URL against the policy and resolves its host: every address the name resolves to
 * must be allowed (one refused address refuses the name, so a round-robin record cannot slip a
 * private address in). The connection is then made to the returned address, never to a second
 * resolution, so a name that changes its answer (DNS rebinding) cannot move it.
 * Throws WebhookUrlError when refused; DNS failures are thrown as they come.
 */
export async function resolveWebhookTarget(
  text: string,
  policy: WebhookUrlPolicy,
  lookup: Lookup,
): Promise<WebhookTarget> {
  const url = parseWebhookUrl(text);
  if (url.protocol === 'http:' && !policy.allowHttp) {
    throw new WebhookUrlError('must be an https:// URL (http: is not allowed here)');
  }
  const host = hostOf(url);
  const literal = isIP(host);
  const addresses =
    literal === 0 ? await lookup(host) : [{ address: host, family: literal === 6 ? 6 : 4 }];
  const first = addresses[0];
  if (!first) {
    throw new WebhookUrlError(`${host} resolves to no address`);
  }
  if (!policy.allowPrivate) {
    for (const { address } of addresses) {
      const reason = refusedAddressReason(address);
      if (reason !== null) {
        const which = literal === 0 ? `${host} resolves to ${address}, ` : `${address} is `;
        throw new WebhookUrlError(`${which}a ${reason} address, which is not allowed here`);
      }
    }
  }
  return { url, host, address: first.address, family: first.family === 6 ? 6 : 4 };
}

/**
 * Validates a webhook URL for a caller (the jobs API at submission, `enqueue`): throws
 * `validation_failed` (400) naming `field` when the URL is malformed, not https (unless allowed),
 * or its host is, or resolves to, an address the policy refuses, or does not exist. A name whose
 * resolution fails for another reason (a DNS timeout) is accepted: each attempt checks it again.
 */
export async function validateWebhookUrl(
  text: string,
  policy: WebhookUrlPolicy,
  lookup: Lookup = systemLookup,
  field = 'webhook.url',
): Promise<void> {
  const refuse = (problem: string): AppError =>
    new AppError(ErrorCode.ValidationFailed, `${field}: ${problem}`, {
      fields: [{ field, problem }],
    });
  const TIMED_OUT = Symbol('timed out');
  try {
    await withDeadline(
      resolveWebhookTarget(text, policy, lookup),
      VALIDATION_DNS_TIMEOUT_MS,
      TIMED_OUT,
    );
  } catch (err) {
    if (err instanceof WebhookUrlError) {
      throw refuse(err.message);
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') {
      throw refuse(`the host does not resolve (${code})`);
    }
  }
}
