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
    req.body = await this.read(req);
    return next.handle();
  }

  private async read(req: Request): Promise<unknown> {
    if (!hasBody(req)) {
      return undefined;
    }
    if (!req.is('application/json')) {
      throw new AppError(ErrorCode.UnsupportedMediaType, 'send application/json');
    }
    const text = await new BodyReader(req, {
      maxBytes: this.config.HTTP_BODY_LIMIT_BYTES,
      idleMs: this.config.HTTP_BODY_IDLE_TIMEOUT_MS,
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
}

/** The route takes a JSON body, read after authentication (see JsonBodyInterceptor). */
export const JsonBody = () => UseInterceptors(JsonBodyInterceptor);
