import {
  type ArgumentsHost,
  Catch,
  type ExceptionFilter,
  HttpException,
  Logger,
} from '@nestjs/common';
import type { Request, Response } from 'express';
import { AppError, asAppError, type ErrorBody } from './app-error';
import { ErrorCode } from './error-code';

/** Maps every error thrown on an HTTP route to `{error, message}` with the right status. */
@Catch()
export class HttpExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('HttpExceptionFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const res = ctx.getResponse<Response>();
    const req = ctx.getRequest<Request>();
    if (isTerminusFailure(exception)) {
      // Health probes get terminus' standard JSON, naming the failing checks.
      res.status(exception.getStatus()).json(exception.getResponse());
      return;
    }
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
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (error.code === ErrorCode.InvalidToken) {
      res.setHeader('WWW-Authenticate', `Bearer error="invalid_token"`);
    } else if (error.code === ErrorCode.InsufficientScope) {
      res.setHeader('WWW-Authenticate', `Bearer error="insufficient_scope"`);
    }
    if (error.extra.retryAfterS !== undefined) {
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(error.extra.retryAfterS))));
    }
    const body: ErrorBody = { error: error.code, message: error.message };
    if (error.extra.fields) {
      body.fields = error.extra.fields;
    }
    res.status(error.status).json(body);
  }
}

function isTerminusFailure(exception: unknown): exception is HttpException {
  if (!(exception instanceof HttpException) || exception.getStatus() !== 503) {
    return false;
  }
  const body = exception.getResponse() as { status?: unknown; details?: unknown };
  return body.status === 'error' && typeof body.details === 'object';
}

/** Normalises Nest's and Express' own errors (404 route, body-parser limits) into AppErrors. */
export function toAppError(exception: unknown): AppError {
  if (exception instanceof AppError) {
    return exception;
  }
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    // Nest maps body-parser's SyntaxError to a bare 400; nothing of ours throws HttpException.
    const message =
      status === 400 ? `request is malformed: ${messageOf(exception)}` : messageOf(exception);
    return new AppError(codeForStatus(status), message);
  }
  const status = (exception as { status?: unknown; type?: unknown }).status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const type = (exception as { type?: unknown }).type;
    const message =
      type === 'entity.parse.failed'
        ? 'request body is not valid JSON'
        : type === 'entity.too.large'
          ? 'request body is larger than the limit'
          : (exception as Error).message;
    return new AppError(codeForStatus(status), message);
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
