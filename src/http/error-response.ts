import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppError, ErrorBody } from '../common/app-error';
import { ErrorCode } from '../common/error-code';

/** Whether the request declares a body: a length above 0, or chunked. */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Whether part of the request's body has not even been received yet. */
export function bodyPending(req: IncomingMessage): boolean {
  return !req.complete && hasBody(req);
}

/**
 * Answers an error as framegate's JSON body. When the request's body is still unread (a refusal
 * before the body, a limit or timeout within it), the response says `Connection: close` and the
 * socket is destroyed once the response is flushed: Node would otherwise read and discard the
 * rest of the body to keep the connection alive, letting a refused client go on uploading.
 */
export function sendError(req: IncomingMessage, res: ServerResponse, error: AppError): void {
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
  if (bodyPending(req)) {
    res.setHeader('Connection', 'close');
    res.once('finish', () => req.socket.destroy());
  }
  const body: ErrorBody = { error: error.code, message: error.message };
  if (error.extra.fields) {
    body.fields = error.extra.fields;
  }
  const text = JSON.stringify(body);
  res.statusCode = error.status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}
