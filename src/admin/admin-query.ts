import { z } from 'zod';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';

/** Page sizes of the admin lists: the default and the most one page returns. */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;
/** `param.<key>` filters in one query, and their sizes. */
const MAX_PARAM_FILTERS = 10;
const MAX_PARAM_KEY = 100;
const MAX_PARAM_VALUE = 500;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A filter value: one query string value (a repeated key is an array, refused as such). */
export const filterText = z.string().min(1).max(200);
export const uuid = z.string().regex(UUID, 'must be a UUID');
/** ISO 8601 with a time and an offset (or Z), e.g. 2026-12-02T13:55:10Z. */
export const instant = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

/** The query of a route that takes none: any key is refused (a typo must not pass silently). */
export const noQuery = z.strictObject({});

/** The paging part of every list query. */
export const pageQuery = {
  cursor: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(DEFAULT_PAGE_SIZE),
};

/** A page of a list; `nextCursor` is null on the last page. */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/**
 * The position after a row in a keyset order on (timestamp DESC, id DESC). The timestamp is
 * Postgres' own text of it in UTC with microseconds (a JS Date has milliseconds only, which would
 * skip or repeat rows that share a millisecond), made with CURSOR_TIME_SQL.
 */
export interface Cursor {
  at: string;
  id: string;
}

/** SQL for a timestamptz column's cursor text, e.g. `${CURSOR_TIME_SQL('created_at')}`. */
export const CURSOR_TIME_SQL = (column: string): string =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const cursorSchema = z.tuple([z.string().regex(CURSOR_TIME), uuid]);

/** The opaque form given to clients: base64url of a JSON pair. */
export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.at, cursor.id])).toString('base64url');
}

export function decodeCursor(text: string): Cursor {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    value = undefined;
  }
  const parsed = cursorSchema.safeParse(value);
  if (!parsed.success) {
    throw new AppError(ErrorCode.ValidationFailed, 'query is invalid: cursor: not a cursor', {
      fields: [{ field: 'cursor', problem: 'not a cursor this API gave out' }],
    });
  }
  const [at, id] = parsed.data;
  return { at, id };
}

/** Splits `param.<key>=value` entries (business parameter filters) from the rest of a query. */
export function splitParamFilters(query: Record<string, unknown>): {
  params: Array<[string, string]>;
  rest: Record<string, unknown>;
} {
  const params: Array<[string, string]> = [];
  const rest: Record<string, unknown> = {};
  const problems: Array<{ field: string; problem: string }> = [];
  for (const [key, value] of Object.entries(query)) {
    if (!key.startsWith('param.')) {
      rest[key] = value;
      continue;
    }
    const name = key.slice('param.'.length);
    if (name.length === 0 || name.length > MAX_PARAM_KEY) {
      problems.push({
        field: key,
        problem: `a parameter name has 1 to ${MAX_PARAM_KEY} characters`,
      });
    } else if (typeof value !== 'string' || value.length > MAX_PARAM_VALUE) {
      problems.push({ field: key, problem: `one value of at most ${MAX_PARAM_VALUE} characters` });
    } else {
      params.push([name, value]);
    }
  }
  if (params.length > MAX_PARAM_FILTERS) {
    problems.push({ field: 'param', problem: `at most ${MAX_PARAM_FILTERS} parameter filters` });
  }
  if (problems.length > 0) {
    throw new AppError(
      ErrorCode.ValidationFailed,
      `query is invalid: ${problems.map((p) => `${p.field}: ${p.problem}`).join('; ')}`,
      { fields: problems },
    );
  }
  return { params, rest };
}

const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

/**
 * The jsonb documents a `param.<key>=value` filter matches by containment (`params @> $n::jsonb`):
 * the value as a string and, when it reads as a JSON number or boolean, also as that, since a
 * query string cannot say whether `amount=5` meant 5 or "5". Keys and values are bound, never
 * spliced into SQL.
 */
export function paramDocuments(key: string, value: string): string[] {
  const docs = [JSON.stringify({ [key]: value })];
  if (value === 'true' || value === 'false') {
    docs.push(JSON.stringify({ [key]: value === 'true' }));
  } else if (JSON_NUMBER.test(value) && Number.isFinite(Number(value))) {
    // JSON's own number grammar (no leading zeros, no `+`): the text is a number document as is.
    docs.push(`{${JSON.stringify(key)}:${value}}`);
  }
  return docs;
}

/** Collects SQL conditions and their bind parameters ($1, $2, ... in order). */
export class SqlWhere {
  readonly params: unknown[] = [];
  private readonly conditions: string[] = [];

  /** Binds a value; returns its placeholder. */
  bind(value: unknown): string {
    this.params.push(value);
    return `$${this.params.length}`;
  }

  /** Adds a condition built from placeholders `bind` returned. */
  add(condition: string): void {
    this.conditions.push(condition);
  }

  /** `column = $n` when the value is given. */
  equals(column: string, value: unknown): void {
    if (value !== undefined) {
      this.add(`${column} = ${this.bind(value)}`);
    }
  }

  /** `from <= column < to`, each side when given. */
  range(column: string, from: Date | undefined, to: Date | undefined): void {
    if (from !== undefined) {
      this.add(`${column} >= ${this.bind(from)}`);
    }
    if (to !== undefined) {
      this.add(`${column} < ${this.bind(to)}`);
    }
  }

  /** Rows after the cursor in the order (column DESC, id DESC). */
  after(column: string, cursor: Cursor | undefined): void {
    if (cursor !== undefined) {
      this.add(
        `(${column}, id) < (${this.bind(cursor.at)}::timestamptz, ${this.bind(cursor.id)}::uuid)`,
      );
    }
  }

  /** The WHERE clause, or nothing without conditions. */
  sql(): string {
    return this.conditions.length > 0 ? `WHERE ${this.conditions.join(' AND ')}` : '';
  }
}

/** One page from rows fetched with `LIMIT limit + 1`; the extra row only says there is more. */
export function pageOf<R, T>(
  rows: R[],
  limit: number,
  map: (row: R) => T,
  cursorOf: (row: R) => Cursor,
): Page<T> {
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  const last = kept[kept.length - 1];
  return {
    items: kept.map(map),
    nextCursor: more && last !== undefined ? encodeCursor(cursorOf(last)) : null,
  };
}
