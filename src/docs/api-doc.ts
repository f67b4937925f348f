import { applyDecorators } from '@nestjs/common';
import {
  ApiBody,
  ApiExtension,
  ApiHeader,
  ApiOperation,
  ApiQuery,
  ApiResponse,
} from '@nestjs/swagger';
import type { SchemaObject } from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';
import { z } from 'zod';
import { ErrorCode } from '../common/error-code';

/** A zod schema as an OpenAPI 3.0 schema: the one the route validates with, never restated. */
export function openApiSchema(schema: z.ZodType): SchemaObject {
  return z.toJSONSchema(schema, {
    target: 'openapi-3.0',
    io: 'input',
    unrepresentable: 'any',
  }) as SchemaObject;
}

/** framegate's error body, on every refusal of every route. */
export const errorBodySchema = z.strictObject({
  error: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  /** With `validation_failed`: every bad field and what is wrong with it. */
  fields: z.array(z.strictObject({ field: z.string(), problem: z.string() })).optional(),
});

type Answer =
  | z.ZodType
  | { description: string; contentType: string; schema?: SchemaObject }
  | { description: string };

export interface ApiDocOptions {
  summary: string;
  description?: string;
  /** A JSON body validated by this schema, or a body of another type. */
  body?: z.ZodType | { contentType: string; description: string };
  /** Request headers the route reads. */
  headers?: Array<{ name: string; description: string; required?: boolean }>;
  /** Query parameters, from the schema that validates them. */
  query?: z.ZodObject;
  /** Answers by status; errors other than those listed come from `errors`. */
  responses: Record<number, Answer>;
  /** Error statuses this route answers with the error body, besides 401/403 of its scopes. */
  errors?: number[];
}

/**
 * The OpenAPI description of a route, from the zod schemas it validates with and answers in.
 * Required scopes and the 401/403 answers come from `RequireScopes` itself.
 */
export function ApiDoc(o: ApiDocOptions): MethodDecorator {
  const decorators: MethodDecorator[] = [
    ApiOperation({ summary: o.summary, description: o.description }),
  ];
  if (o.body instanceof z.ZodType) {
    decorators.push(ApiBody({ schema: openApiSchema(o.body) }));
  } else if (o.body) {
    decorators.push(
      ApiBody({
        description: o.body.description,
        schema: { type: 'string', format: 'binary' },
      }),
      ApiExtension('x-body-content-type', o.body.contentType),
    );
  }
  for (const h of o.headers ?? []) {
    decorators.push(
      ApiHeader({ name: h.name, description: h.description, required: h.required ?? false }),
    );
  }
  if (o.query) {
    const shape = o.query.shape as Record<string, z.ZodType>;
    for (const [name, field] of Object.entries(shape)) {
      decorators.push(
        ApiQuery({
          name,
          required: !field.safeParse(undefined).success,
          schema: openApiSchema(field),
        }),
      );
    }
  }
  for (const [status, answer] of Object.entries(o.responses)) {
    if (answer instanceof z.ZodType) {
      decorators.push(
        ApiResponse({ status: Number(status), description: 'OK', schema: openApiSchema(answer) }),
      );
    } else if ('contentType' in answer) {
      decorators.push(
        ApiResponse({
          status: Number(status),
          description: answer.description,
          content: {
            [answer.contentType]: { schema: answer.schema ?? { type: 'string', format: 'binary' } },
          },
        }),
      );
    } else {
      decorators.push(ApiResponse({ status: Number(status), description: answer.description }));
    }
  }
  for (const status of o.errors ?? []) {
    decorators.push(errorResponse(status));
  }
  return applyDecorators(...decorators);
}

/** An error answer with framegate's error body. */
export function errorResponse(
  status: number,
  description = 'Refused; see `error`',
): MethodDecorator & ClassDecorator {
  return ApiResponse({ status, description, schema: openApiSchema(errorBodySchema) });
}
