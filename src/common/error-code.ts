import { CloseCode } from '../protocol/close-codes';

/** Every error the service reports, on any transport. Mapped to HTTP and close codes below. */
export enum ErrorCode {
  InvalidToken = 'invalid_token',
  InsufficientScope = 'insufficient_scope',
  OriginNotAllowed = 'origin_not_allowed',
  ValidationFailed = 'validation_failed',
  BadRequest = 'bad_request',
  NotFound = 'not_found',
  Conflict = 'conflict',
  PayloadTooLarge = 'payload_too_large',
  UnsupportedMediaType = 'unsupported_media_type',
  QuotaExceeded = 'quota_exceeded',
  NodeFull = 'node_full',
  Draining = 'draining',
  Unavailable = 'unavailable',
  /** Free disk space under DATA_DIR is below HEALTH_MIN_FREE_DISK_MB, or a spool write hit ENOSPC. */
  InsufficientStorage = 'insufficient_storage',
  /** Postgres is down or unreachable (restarting); retry after `Retry-After`. */
  DatabaseUnavailable = 'database_unavailable',
  /**
   * Another node holds the session and did not let go of it in time (a takeover unanswered):
   * resume again after `Retry-After`. Never two writers on one spool.
   */
  SessionBusy = 'session_busy',
  /** The node records as many frames as it can: a new session would stall the others. */
  OverCapacity = 'over_capacity',
  Internal = 'internal_error',
  /** Stream protocol violation (bad header, unknown type, invalid JSON, seq gap). */
  ProtocolError = 'protocol_error',
  /** Unknown session, bad resume token, or resume window passed. */
  UnknownSession = 'unknown_session',
  /** A session message arrived in a state where it makes no sense (e.g. `open` twice). */
  InvalidState = 'invalid_state',
  /** One image could not be decoded; the frame is acked as rejected. */
  BadImage = 'bad_image',
  /**
   * A compressed video or Opus chunk failed the bitstream checks: not recorded; its seq is settled
   * (covered by the next ack) and the server asks for a key frame.
   */
  BadFrame = 'bad_frame',
  /** `open` declared a codec, size or audio codec the channel does not accept. */
  CodecNotAllowed = 'codec_not_allowed',
  /** A `Range` request selects no byte of the file (HTTP 416). */
  RangeNotSatisfiable = 'range_not_satisfiable',
  /** A request body stopped arriving for HTTP_BODY_IDLE_TIMEOUT_MS (HTTP 408). */
  RequestTimeout = 'request_timeout',
  /** The client's address sent more REST requests, or more refused ones, than its rate allows. */
  RateLimited = 'rate_limited',
  /**
   * A request for another node of the cluster (a kick, a disconnect) was not carried out: that
   * node is dead or did not answer within CLUSTER_REQUEST_TIMEOUT_MS (HTTP 504).
   */
  Undelivered = 'undelivered',
}

/** The HTTP status of each error code; exhaustive, so a new code cannot be forgotten. */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case ErrorCode.InvalidToken:
      return 401;
    case ErrorCode.InsufficientScope:
    case ErrorCode.OriginNotAllowed:
      return 403;
    case ErrorCode.ValidationFailed:
    case ErrorCode.BadRequest:
    case ErrorCode.ProtocolError:
      return 400;
    case ErrorCode.NotFound:
    case ErrorCode.UnknownSession:
      return 404;
    case ErrorCode.Conflict:
    case ErrorCode.InvalidState:
      return 409;
    case ErrorCode.BadImage:
    case ErrorCode.BadFrame:
    case ErrorCode.CodecNotAllowed:
      return 422;
    case ErrorCode.PayloadTooLarge:
      return 413;
    case ErrorCode.UnsupportedMediaType:
      return 415;
    case ErrorCode.RangeNotSatisfiable:
      return 416;
    case ErrorCode.RequestTimeout:
      return 408;
    case ErrorCode.QuotaExceeded:
    case ErrorCode.RateLimited:
      return 429;
    case ErrorCode.NodeFull:
    case ErrorCode.Draining:
    case ErrorCode.Unavailable:
    case ErrorCode.InsufficientStorage:
    case ErrorCode.DatabaseUnavailable:
    case ErrorCode.OverCapacity:
    case ErrorCode.SessionBusy:
      return 503;
    case ErrorCode.Internal:
      return 500;
    case ErrorCode.Undelivered:
      return 504;
  }
}

/**
 * What an error does to a WebSocket connection: a close code when it ends the connection, or
 * null when it is answered with an `error` message and the connection stays open.
 */
export function closeCodeOf(code: ErrorCode): CloseCode | null {
  switch (code) {
    case ErrorCode.ProtocolError:
      return CloseCode.Protocol;
    case ErrorCode.UnknownSession:
      return CloseCode.UnknownSession;
    case ErrorCode.PayloadTooLarge:
      return CloseCode.TooLarge;
    case ErrorCode.Draining:
      return CloseCode.Restart;
    case ErrorCode.DatabaseUnavailable:
      return CloseCode.TryAgainLater;
    case ErrorCode.Internal:
    case ErrorCode.Unavailable:
      return CloseCode.Internal;
    case ErrorCode.InsufficientStorage:
    case ErrorCode.OverCapacity:
    case ErrorCode.SessionBusy:
      return CloseCode.TryAgainLater;
    // Only `auth` refreshes reach a handler with a token: a refused one keeps the old expiry.
    // request_timeout and rate_limited are HTTP's: WebSocket has its own limits and timeouts.
    case ErrorCode.InvalidToken:
    case ErrorCode.InsufficientScope:
    case ErrorCode.OriginNotAllowed:
    case ErrorCode.ValidationFailed:
    case ErrorCode.BadRequest:
    case ErrorCode.NotFound:
    case ErrorCode.Conflict:
    case ErrorCode.UnsupportedMediaType:
    case ErrorCode.QuotaExceeded:
    case ErrorCode.NodeFull:
    case ErrorCode.InvalidState:
    case ErrorCode.BadImage:
    case ErrorCode.BadFrame:
    case ErrorCode.CodecNotAllowed:
    case ErrorCode.RangeNotSatisfiable:
    case ErrorCode.RequestTimeout:
    case ErrorCode.RateLimited:
    case ErrorCode.Undelivered:
      return null;
  }
}
