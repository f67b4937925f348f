import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { BodyReader } from './body-reader';

/** A request body the test feeds by hand. */
function request(headers: Record<string, string> = {}): PassThrough & IncomingMessage {
  return Object.assign(new PassThrough(), { headers }) as unknown as PassThrough & IncomingMessage;
}

async function codeOf(p: Promise<unknown>): Promise<ErrorCode | 'resolved'> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return (err as AppError).code;
  }
}

describe('BodyReader', () => {
  it('hands over the body chunk by chunk as it arrives, then null', async () => {
    const req = request();
    const reader = new BodyReader(req, { maxBytes: 100, idleMs: 5_000 });
    const first = reader.next();
    req.write(Buffer.from('abc'));
    expect((await first)?.toString()).toBe('abc');
    req.end(Buffer.from('de'));
    expect((await reader.next())?.toString()).toBe('de');
    expect(await reader.next()).toBeNull();
    expect(reader.bytes).toBe(5);
  });

  it('refuses a declared length over the limit before reading anything', () => {
    expect(
      () => new BodyReader(request({ 'content-length': '101' }), { maxBytes: 100, idleMs: 5_000 }),
    ).toThrow(AppError);
  });

  it('refuses a body that grows past the limit while read', async () => {
    const req = request();
    const reader = new BodyReader(req, { maxBytes: 4, idleMs: 5_000 });
    req.end(Buffer.from('too long'));
    expect(await codeOf(reader.readAll())).toBe(ErrorCode.PayloadTooLarge);
  });

  it('answers request_timeout when no byte comes for idleMs', async () => {
    const req = request();
    const reader = new BodyReader(req, { maxBytes: 100, idleMs: 50 });
    req.write(Buffer.from('a'));
    expect(await codeOf(reader.readAll())).toBe(ErrorCode.RequestTimeout);
    req.destroy();
  });

  it('reports a body cut off by the client', async () => {
    const req = request();
    const reader = new BodyReader(req, { maxBytes: 100, idleMs: 5_000 });
    const pending = reader.readAll();
    req.destroy();
    expect(await codeOf(pending)).toBe(ErrorCode.BadRequest);
  });
});
