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
  Internal = 'internal_error',
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
      return 400;
    case ErrorCode.NotFound:
      return 404;
    case ErrorCode.Conflict:
      return 409;
    case ErrorCode.PayloadTooLarge:
      return 413;
    case ErrorCode.UnsupportedMediaType:
      return 415;
    case ErrorCode.QuotaExceeded:
      return 429;
    case ErrorCode.NodeFull:
    case ErrorCode.Draining:
    case ErrorCode.Unavailable:
      return 503;
    case ErrorCode.Internal:
      return 500;
  }
}
