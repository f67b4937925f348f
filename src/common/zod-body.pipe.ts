import { type PipeTransform } from '@nestjs/common';
import type { z } from 'zod';
import { AppError } from './app-error';
import { ErrorCode } from './error-code';

/** Validates a request body against a zod schema; failures list every bad field. */
export class ZodBodyPipe<S extends z.ZodType> implements PipeTransform<unknown, z.output<S>> {
  constructor(private readonly schema: S) {}

  transform(value: unknown): z.output<S> {
    return parseOrThrow(this.schema, value, 'request body');
  }
}

export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  what: string,
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) {
    return result.data;
  }
  const fields = result.error.issues.flatMap((issue) => {
    // An unknown key is reported against the key itself, not its parent object.
    const paths =
      issue.code === 'unrecognized_keys'
        ? issue.keys.map((key) => [...issue.path, key])
        : [issue.path];
    return paths.map((path) => ({
      field: path.length > 0 ? path.join('.') : '(root)',
      problem: issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message,
    }));
  });
  throw new AppError(
    ErrorCode.ValidationFailed,
    `${what} is invalid: ${fields.map((f) => `${f.field}: ${f.problem}`).join('; ')}`,
    { fields },
  );
}
