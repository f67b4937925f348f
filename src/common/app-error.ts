import { DATABASE_RETRY_AFTER_S, isDatabaseUnavailable } from './database-error';
import { ErrorCode, httpStatusOf } from './error-code';

export interface FieldProblem {
  field: string;
  problem: string;
}

/** An expected failure with a stable code; the exception filter turns it into the JSON body. */
export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra: { fields?: FieldProblem[]; retryAfterS?: number } = {},
  ) {
    super(message);
    this.name = 'AppError';
  }

  get status(): number {
    return httpStatusOf(this.code);
  }
}

/** The JSON body of every error response. */
export interface ErrorBody {
  error: ErrorCode;
  message: string;
  fields?: FieldProblem[];
}

/**
 * The AppError of anything a handler threw: itself when it is one, `database_unavailable` (503,
 * 1013, with Retry-After) when the database cannot be reached, otherwise `internal_error`.
 */
export function asAppError(err: unknown): AppError {
  if (err instanceof AppError) {
    return err;
  }
  if (isDatabaseUnavailable(err)) {
    return new AppError(ErrorCode.DatabaseUnavailable, 'the database is unavailable; retry later', {
      retryAfterS: DATABASE_RETRY_AFTER_S,
    });
  }
  return new AppError(ErrorCode.Internal, 'internal error');
}
