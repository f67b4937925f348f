import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { isIP } from 'node:net';
import {
  type Lookup,
  resolveWebhookTarget,
  systemLookup,
  type WebhookTarget,
  WebhookUrlError,
  type WebhookUrlPolicy,
} from './webhook-url';

/** Bytes of a receiver's answer kept for the audit; the rest is never read. */
export const RESPONSE_EXCERPT_BYTES = 1024;

export interface SendRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * What became of one POST. `response`: the receiver answered (any status); `blocked`: the policy
 * refused the destination, nothing was sent; `error`: no answer (DNS, connection, TLS, timeout,
 * aborted).
 */
export type SendResult =
  | { kind: 'response'; status: number; excerpt: string }
  | { kind: 'blocked'; error: string }
  | { kind: 'error'; error: string };

export interface WebhookSenderOptions {
  policy: WebhookUrlPolicy;
  /** Whole attempt: resolution, connection, TLS, request, answer and its excerpt. */
  timeoutMs: number;
  lookup?: Lookup;
}

/**
 * Makes one webhook POST, and nothing else: resolves and checks the destination, connects to that
 * very address (the Host header and TLS server name stay the URL's), follows no redirect, reads at
 * most RESPONSE_EXCERPT_BYTES of the answer, and gives up at the timeout. Never throws: every
 * outcome is a SendResult, so no answer can crash the node.
 */
export class WebhookSender {
  private readonly lookup: Lookup;

  constructor(private readonly options: WebhookSenderOptions) {
    this.lookup = options.lookup ?? systemLookup;
  }

  async send(req: SendRequest, signal?: AbortSignal): Promise<SendResult> {
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const deadline = signal ? AbortSignal.any([timeout, signal]) : timeout;
    const why = (err: unknown): string => {
      if (timeout.aborted) {
        return `timed out after ${this.options.timeoutMs} ms`;
      }
      if (signal?.aborted) {
        return `aborted: ${String(signal.reason)}`;
      }
      const e = err as NodeJS.ErrnoException;
      return e.code ? `${e.code}: ${e.message}` : String(e?.message ?? err);
    };
    let target: WebhookTarget;
    try {
      target = await abortable(
        resolveWebhookTarget(req.url, this.options.policy, this.lookup),
        deadline,
      );
    } catch (err) {
      if (err instanceof WebhookUrlError) {
        return { kind: 'blocked', error: err.message };
      }
      return { kind: 'error', error: why(err) };
    }
    return new Promise<SendResult>((resolve) => {
      let settled = false;
      const settle = (result: SendResult): void => {
        if (!settled) {
          settled = true;
          resolve(result);
        }
      };
      const options: RequestOptions & { servername?: string } = {
        method: 'POST',
        hostname: target.host,
        port: target.url.port || undefined,
        path: `${target.url.pathname}${target.url.search}`,
        headers: { ...req.headers, 'Content-Length': String(Buffer.byteLength(req.body)) },
        // One connection per attempt: a pooled socket would outlive the check of its address.
        agent: false,
        lookup: pinnedLookup(target),
        signal: deadline,
      };
      if (isIP(target.host) === 0) {
        options.servername = target.host;
      }
      const send = target.url.protocol === 'https:' ? httpsRequest : httpRequest;
      let answered = false;
      let request: ReturnType<typeof httpRequest>;
      try {
        request = send(options, (res) => {
          answered = true;
          readExcerpt(res, settle);
        });
      } catch (err) {
        // Header values the receiver's URL cannot carry (invalid characters) throw synchronously.
        settle({ kind: 'error', error: why(err) });
        return;
      }
      // Once answered, the status is the outcome whatever happens to the rest (readExcerpt).
      request.on('error', (err) => {
        if (!answered) {
          settle({ kind: 'error', error: why(err) });
        }
      });
      request.end(req.body);
    });
  }
}

/** Reads at most RESPONSE_EXCERPT_BYTES, then drops the connection; the status is the answer. */
function readExcerpt(res: IncomingMessage, settle: (result: SendResult) => void): void {
  const chunks: Buffer[] = [];
  let bytes = 0;
  const done = (): void => {
    const excerpt = Buffer.concat(chunks)
      .subarray(0, RESPONSE_EXCERPT_BYTES)
      .toString('utf8')
      // Postgres text cannot hold NUL.
      .replace(/\0/g, '');
    settle({ kind: 'response', status: res.statusCode ?? 0, excerpt });
  };
  res.on('data', (chunk: Buffer) => {
    if (bytes < RESPONSE_EXCERPT_BYTES) {
      chunks.push(chunk);
      bytes += chunk.length;
    }
    if (bytes >= RESPONSE_EXCERPT_BYTES) {
      done();
      res.destroy();
    }
  });
  res.on('end', done);
  // A reset or a timeout while the body arrives still leaves the status as the answer.
  res.on('error', done);
  res.on('close', done);
}

/** A `lookup` that answers the already checked address, whatever name it is asked for. */
function pinnedLookup(target: WebhookTarget): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all) {
      callback(null, [{ address: target.address, family: target.family }]);
    } else {
      callback(null, target.address, target.family);
    }
  };
}

/**
 * Rejects when the signal aborts first (a DNS lookup cannot be cancelled); the caller tells why
 * from its signals.
 */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(new Error('aborted'));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: Error) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
