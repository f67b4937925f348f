/** WebSocket close codes (spec section 4); what each means is in CLOSE_CODE_MEANINGS. */
export enum CloseCode {
  Normal = 1000,
  TooLarge = 1009,
  Internal = 1011,
  Restart = 1012,
  TryAgainLater = 1013,
  Protocol = 4000,
  TokenExpired = 4001,
  Kicked = 4003,
  UnknownSession = 4004,
  HeartbeatTimeout = 4008,
  Replaced = 4009,
  Quota = 4029,
}

/** What each close code means and what a client does about it (docs and AsyncAPI). */
export const CLOSE_CODE_MEANINGS: Record<CloseCode, string> = {
  [CloseCode.Normal]: 'Normal, after `closed`.',
  [CloseCode.TooLarge]: 'A message larger than its limit.',
  [CloseCode.Internal]: 'Internal error: resume with backoff.',
  [CloseCode.Restart]:
    'Server restarting or draining, or the node lost its cluster lease: resume, possibly on ' +
    'another node.',
  [CloseCode.TryAgainLater]:
    'Try again later: the node cannot store more right now (disk full, over recording capacity), ' +
    'the database is unavailable, or another node holds the session and did not let go of it ' +
    'in time. Resume or open again with backoff.',
  [CloseCode.Protocol]:
    'Protocol error: bad header, unknown type, invalid JSON, seq gap, media before open.',
  [CloseCode.TokenExpired]: 'Access token expired without `auth`: reconnect with a fresh token.',
  [CloseCode.Kicked]: 'Disconnected by an administrator: do not reconnect.',
  [CloseCode.UnknownSession]: 'Unknown session, bad resume token, or resume window passed.',
  [CloseCode.HeartbeatTimeout]: 'Heartbeat timeout: resume.',
  [CloseCode.Replaced]: 'The session was resumed on another connection (on this node or another).',
  [CloseCode.Quota]: 'Frame-rate or bandwidth quota exceeded persistently.',
};

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
  | 'session_busy'
  | 'internal_error';
