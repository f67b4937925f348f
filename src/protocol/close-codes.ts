/** WebSocket close codes (spec section 4). */
export enum CloseCode {
  /** Normal, after `closed`. */
  Normal = 1000,
  /** A message larger than its limit. */
  TooLarge = 1009,
  /** Internal error: resume with backoff. */
  Internal = 1011,
  /** Server restarting or draining: resume, possibly on another node. */
  Restart = 1012,
  /**
   * Try again later: the node cannot store more right now (disk full) or the database is
   * unavailable (restarting). Resume or open again with backoff.
   */
  TryAgainLater = 1013,
  /** Protocol error: bad header, unknown type, invalid JSON, seq gap, media before open. */
  Protocol = 4000,
  /** Access token expired without `auth`. */
  TokenExpired = 4001,
  /** Disconnected by an administrator. */
  Kicked = 4003,
  /** Unknown session, bad resume token, or resume window passed. */
  UnknownSession = 4004,
  /** Heartbeat timeout. */
  HeartbeatTimeout = 4008,
  /** The session was resumed on another connection. */
  Replaced = 4009,
  /** Frame-rate or bandwidth quota exceeded persistently. */
  Quota = 4029,
}

/** Why a connection ended, as recorded in its audit (spec section 8). */
export type CloseReason =
  | 'normal'
  | 'client_closed'
  | 'connection_lost'
  | 'heartbeat_timeout'
  | 'kicked'
  | 'token_expired'
  | 'protocol_error'
  | 'message_too_large'
  | 'unknown_session'
  | 'replaced'
  | 'quota_exceeded'
  | 'server_shutdown'
  | 'insufficient_storage'
  | 'database_unavailable'
  | 'over_capacity'
  | 'internal_error';
