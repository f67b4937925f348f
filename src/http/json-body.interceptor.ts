import {
  type CallHandler,
  type ExecutionContext,
  Inject,
  Injectable,
  type NestInterceptor,
  UseInterceptors,
} from '@nestjs/common';
import type { Request } from 'express';
import type { Observable } from 'rxjs';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { exceedsJsonDepth, MAX_JSON_DEPTH } from '../common/json-depth';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { BodyReader } from './body-reader';
import { hasBody } from './error-response';

/**
 * Reads and parses a route's JSON body into `req.body`. An interceptor runs after the guards, so
 * no byte of the body is read before the caller is authenticated and allowed; there is no global
 * body parser. The depth is checked before JSON.parse, whose recursion deep input would exhaust.
 */
@Injectable()
export class JsonBodyInterceptor implements NestInterceptor {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    const req = context.switchToHttp().getRequest<Request>();
    req.body = await readJsonBody(req, this.config);
    return next.handle();
  }
}

/**
 * A request's JSON body, read chunk by chunk within HTTP_BODY_LIMIT_BYTES and its idle timeout,
 * depth-checked before JSON.parse; undefined when there is none. For the interceptor and for
 * routes that take JSON or another body type (they call it after the guards too).
 */
export async function readJsonBody(req: Request, config: AppConfig): Promise<unknown> {
  if (!hasBody(req)) {
    return undefined;
  }
  if (!req.is('application/json')) {
    throw new AppError(ErrorCode.UnsupportedMediaType, 'send application/json');
  }
  const text = await new BodyReader(req, {
    maxBytes: config.HTTP_BODY_LIMIT_BYTES,
    idleMs: config.HTTP_BODY_IDLE_TIMEOUT_MS,
  }).readAll();
  if (exceedsJsonDepth(text, MAX_JSON_DEPTH)) {
    throw new AppError(
      ErrorCode.BadRequest,
      `request body nests deeper than ${MAX_JSON_DEPTH} levels`,
    );
  }
  try {
    return JSON.parse(text.toString('utf8')) as unknown;
  } catch {
    throw new AppError(ErrorCode.BadRequest, 'request body is malformed JSON');
  }
}

/** The route takes a JSON body, read after authentication (see JsonBodyInterceptor). */
export const JsonBody = () => UseInterceptors(JsonBodyInterceptor);
