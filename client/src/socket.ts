/** What a WebSocket implementation reports to the client, each call at most once per outcome. */
export interface SocketHandlers {
  open(): void;
  /** A text message (binary messages from the server are not part of the protocol). */
  message(text: string): void;
  /** The connection ended after it opened, or could not be made (1006, network). */
  close(code: number, reason: string): void;
  /**
   * The upgrade was answered without a 101. `status` 0 when it cannot be known (browsers do not
   * expose it); `error` is framegate's error code from the JSON body, when there is one.
   */
  refused(status: number, error: string | null, retryAfterS: number | null): void;
}

/** One WebSocket connection, as the client uses it. */
export interface SocketConnection {
  send(data: string | Uint8Array): void;
  close(code: number, reason: string): void;
  /** Drops the connection without a close handshake. */
  terminate(): void;
}

/** Opens WebSocket connections: `ws` in Node, the global WebSocket in browsers. */
export interface SocketFactory {
  /** Browsers cannot set an Authorization header on a WebSocket: they use tickets. */
  readonly canSetHeaders: boolean;
  connect(
    url: string,
    protocol: string,
    headers: Record<string, string>,
    handlers: SocketHandlers,
  ): SocketConnection;
}
