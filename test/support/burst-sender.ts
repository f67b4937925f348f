import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Closed } from '../../src/protocol/messages';

export interface BurstOptions {
  token: string;
  /** The `open` message's fields (without `type`). */
  open: Record<string, unknown>;
  /** Encoded media messages (`encodeMediaMessage`), seq 1, 2, … in order. */
  messages: Buffer[];
  /** Frames kept unacknowledged at most (an SDK outbox re-sending after an outage). */
  window: number;
}

/**
 * A client that sends a burst from a worker thread. A test that times a canary's acks beside a
 * burst must not run the burst client's own work (framing and masking megabytes) on the event
 * loop the service and the canary share: a remote client's work costs the node nothing.
 */
export class BurstSender {
  readonly opened: Promise<string>;
  /** Every message is acknowledged. */
  readonly acked: Promise<void>;
  private readonly closedEvent: Promise<Closed>;
  private readonly worker: Worker;

  constructor(base: string, options: BurstOptions) {
    const url = new URL('/v1/stream', base.replace(/^http/, 'ws')).toString();
    this.worker = new Worker(join(__dirname, 'burst-worker.js'), {
      workerData: {
        url,
        token: options.token,
        open: options.open,
        messages: options.messages,
        window: options.window,
      },
    });
    const failed = new Promise<never>((_, reject) => {
      this.worker.on('error', reject);
      this.worker.on('message', (m: { type: string; error?: string; code?: number }) => {
        if (m.type === 'failed') {
          reject(new Error(`burst client: ${m.error}`));
        } else if (m.type === 'socket-closed') {
          reject(new Error(`burst client: socket closed with ${m.code}`));
        }
      });
    });
    failed.catch(() => undefined);
    const event = <T>(type: string, pick: (m: Record<string, unknown>) => T): Promise<T> =>
      Promise.race([
        new Promise<T>((resolve) =>
          this.worker.on('message', (m: Record<string, unknown>) => {
            if (m.type === type) {
              resolve(pick(m));
            }
          }),
        ),
        failed,
      ]);
    this.opened = event('opened', (m) => m.sessionId as string);
    this.acked = event('acked', () => undefined);
    this.closedEvent = event('closed', (m) => m.closed as Closed);
  }

  /** Sends `close`; resolves with `closed`. */
  close(): Promise<Closed> {
    this.worker.postMessage({ type: 'close' });
    return this.closedEvent;
  }

  stop(): Promise<number> {
    return this.worker.terminate();
  }
}
