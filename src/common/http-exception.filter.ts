import {
  type ArgumentsHost,
  Catch,
  type ExceptionFilter,
  HttpException,
  Logger,
} from '@nestjs/common';
import type { Request, Response } from 'express';
import { sendError } from '../http/error-response';
import { AppError, asAppError } from './app-error';
import { ErrorCode } from './error-code';

/** Maps every error thrown on an HTTP route to `{error, message}` with the right status. */
@Catch()
export class HttpExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('HttpExceptionFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const res = ctx.getResponse<Response>();
    const req = ctx.getRequest<Request>();
    const error = toAppError(exception);
    if (error.code === ErrorCode.Internal) {
      this.logger.error(
        { err: exception, method: req.method, path: req.path },
        'unhandled error on an HTTP route',
      );
    } else if (error.code === ErrorCode.DatabaseUnavailable) {
      this.logger.warn(
        { err: messageOfUnknown(exception), method: req.method, path: req.path },
        'database unavailable under an HTTP route',
      );
    }
    sendError(req, res, error);
  }
}

/** Normalises Nest's and Express' own errors (404 route, bad path escapes) into AppErrors. */
export function toAppError(exception: unknown): AppError {
  if (exception instanceof AppError) {
    return exception;
  }
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    // Nothing of ours throws HttpException: these are Nest's own (404 route, 400).
    const message =
      status === 400 ? `request is malformed: ${messageOf(exception)}` : messageOf(exception);
    return new AppError(codeForStatus(status), message);
  }
  // Express' own errors (a malformed URL escape in a path parameter) carry a 4xx status.
  const status = (exception as { status?: unknown }).status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new AppError(codeForStatus(status), (exception as Error).message);
  }
  return asAppError(exception);
}

function messageOfUnknown(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return ErrorCode.BadRequest;
    case 401:
      return ErrorCode.InvalidToken;
    case 403:
      return ErrorCode.InsufficientScope;
    case 404:
      return ErrorCode.NotFound;
    case 409:
      return ErrorCode.Conflict;
    case 413:
      return ErrorCode.PayloadTooLarge;
    case 415:
      return ErrorCode.UnsupportedMediaType;
    case 429:
      return ErrorCode.QuotaExceeded;
    case 503:
      return ErrorCode.Unavailable;
    default:
      return status >= 500 ? ErrorCode.Internal : ErrorCode.BadRequest;
  }
}

function messageOf(exception: HttpException): string {
  const response = exception.getResponse();
  if (typeof response === 'string') {
    return response;
  }
  const message = (response as { message?: unknown }).message;
  if (Array.isArray(message)) {
    return message.join('; ');
  }
  return typeof message === 'string' ? message : exception.message;
}
