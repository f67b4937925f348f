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
