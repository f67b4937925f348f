/** The platform-neutral SDK; `@framegate/client/node` and `/browser` add transports and outboxes. */
export {
  ClientError,
  FramegateClient,
  type ClientEvents,
  type ClientOptions,
  type ClientState,
  type ClientStats,
  type OpenSettings,
  type Refusal,
  type TransportKind,
} from './client.js';
export type { OutboxSnapshot, OutboxStore, PersistedSession } from './outbox.js';
export {
  backoffDelay,
  closeAction,
  DEFAULT_BACKOFF,
  type BackoffOptions,
  type CloseAction,
} from './reconnect-policy.js';
export type { SocketConnection, SocketFactory, SocketHandlers } from './socket.js';
export { CloseCode } from '../../src/protocol/close-codes.js';
export { Track } from '../../src/protocol/media-header.js';
export type { Closed, ClosedRecording, KeyframeReason } from '../../src/protocol/messages.js';
export type { Opened } from '../../src/protocol/open-session.schema.js';
