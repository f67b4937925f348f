import { Pool } from 'pg';
import { QueryFailedError } from 'typeorm';
import { freePort } from '../database/embedded-postgres';
import { AppError, asAppError } from './app-error';
import { isDatabaseUnavailable } from './database-error';
import { closeCodeOf, ErrorCode, httpStatusOf } from './error-code';
import { toAppError } from './http-exception.filter';
import { CloseCode } from '../protocol/close-codes';

function withCode(code: string, message = 'x'): Error {
  return Object.assign(new Error(message), { code });
}

describe('isDatabaseUnavailable', () => {
  it.each([
    ['ECONNREFUSED', withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432')],
    ['ECONNRESET', withCode('ECONNRESET', 'read ECONNRESET')],
    [
      '57P01 admin_shutdown',
      withCode('57P01', 'terminating connection due to administrator command'),
    ],
    ['57P03 cannot_connect_now', withCode('57P03', 'the database system is starting up')],
    ['08006 connection_failure', withCode('08006')],
    ['08001 unable to connect', withCode('08001')],
    ['a terminated connection', new Error('Connection terminated unexpectedly')],
    ['a pool timeout', new Error('timeout exceeded when trying to connect')],
    ['a connect timeout', new Error('Connection terminated due to connection timeout')],
  ])('recognises %s', (_name, err) => {
    expect(isDatabaseUnavailable(err)).toBe(true);
  });

  it('looks inside TypeORM QueryFailedError, cause chains and AggregateErrors', () => {
    const wrapped = new QueryFailedError('SELECT 1', [], withCode('57P01'));
    expect(isDatabaseUnavailable(wrapped)).toBe(true);
    expect(isDatabaseUnavailable(new Error('outer', { cause: withCode('ECONNRESET') }))).toBe(true);
    const aggregate = new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')]);
    expect(isDatabaseUnavailable(aggregate)).toBe(true);
  });

  it.each([
    ['a unique violation', withCode('23505', 'duplicate key value')],
    ['a syntax error', withCode('42601', 'syntax error at or near')],
    ['a statement timeout', withCode('57014', 'canceling statement due to statement timeout')],
    ['a plain error', new Error('something else')],
    ['a non-error', 'ECONNREFUSED'],
    ['null', null],
  ])('leaves %s alone', (_name, err) => {
    expect(isDatabaseUnavailable(err)).toBe(false);
  });

  it('recognises what node-postgres really throws for a port nobody listens on', async () => {
    const pool = new Pool({
      host: '127.0.0.1',
      port: await freePort(),
      user: 'nobody',
      database: 'nothing',
      connectionTimeoutMillis: 2_000,
    });
    try {
      const err = await pool.query('SELECT 1').then(
        () => null,
        (e: unknown) => e,
      );
      expect(isDatabaseUnavailable(err)).toBe(true);
    } finally {
      await pool.end();
    }
  });
});

describe('database_unavailable', () => {
  it('is 503 over HTTP and closes a WebSocket with 1013', () => {
    expect(httpStatusOf(ErrorCode.DatabaseUnavailable)).toBe(503);
    expect(closeCodeOf(ErrorCode.DatabaseUnavailable)).toBe(CloseCode.TryAgainLater);
    expect(CloseCode.TryAgainLater).toBe(1013);
  });

  it('is what a handler failing on an unreachable database becomes, with a Retry-After', () => {
    for (const map of [asAppError, toAppError]) {
      const error = map(withCode('ECONNREFUSED'));
      expect(error.code).toBe(ErrorCode.DatabaseUnavailable);
      expect(error.status).toBe(503);
      expect(error.extra.retryAfterS).toBeGreaterThan(0);
    }
  });

  it('leaves other failures internal and AppErrors as they are', () => {
    expect(asAppError(withCode('23505')).code).toBe(ErrorCode.Internal);
    const own = new AppError(ErrorCode.NotFound, 'no such session');
    expect(asAppError(own)).toBe(own);
  });
});
