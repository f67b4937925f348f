import { FramegateClient, type ClientOptions } from './client.js';
import { DirectoryOutboxStore } from './directory-outbox.store.js';
import { nodeSocketFactory } from './node-socket.js';

export * from './index.js';
export { DirectoryOutboxStore } from './directory-outbox.store.js';
export { nodeSocketFactory } from './node-socket.js';
export { MjpegSplitter, jpegSize } from './mjpeg-splitter.js';

export interface NodeClientOptions extends Omit<ClientOptions, 'socket' | 'outbox'> {
  /** A directory for the persistent outbox; without it the outbox lives in memory only. */
  outboxDir?: string;
}

/** A client for Node 20: `ws` WebSockets and, with `outboxDir`, a directory outbox. */
export function createNodeClient(options: NodeClientOptions): FramegateClient {
  const { outboxDir, ...rest } = options;
  return new FramegateClient({
    ...rest,
    socket: nodeSocketFactory,
    outbox: outboxDir ? new DirectoryOutboxStore(outboxDir) : undefined,
  });
}
