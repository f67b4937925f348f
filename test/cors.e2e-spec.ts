import { startTestApp, type TestApp } from './support/app';
import { hsToken } from './support/tokens';

/** Issue 11 item 1: CORS by ALLOWED_ORIGINS on every REST route. */
describe('CORS', () => {
  let app: TestApp;
  const allowed = 'https://counter.bank.test';
  const foreign = 'https://evil.test';
  const token = hsToken({ sub: 'teller', channel: 'branch-app' });

  beforeAll(async () => {
    app = await startTestApp({ env: { ALLOWED_ORIGINS: `${allowed},https://kiosk.bank.test` } });
  });
  afterAll(() => app.close());

  const preflight = (path: string, origin: string, method = 'POST') =>
    fetch(`${app.url}${path}`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': method,
        'access-control-request-headers': 'authorization, content-type, x-resume-token',
      },
    });

  it.each([
    ['/v1/tickets', 'POST'],
    ['/v1/sessions', 'POST'],
    ['/v1/sessions/5b0e7a4c-1d7e-4c62-9d1f-3f1e2a7b9c10/frames', 'POST'],
    ['/v1/sessions/5b0e7a4c-1d7e-4c62-9d1f-3f1e2a7b9c10/recording', 'GET'],
    ['/v1/sessions/5b0e7a4c-1d7e-4c62-9d1f-3f1e2a7b9c10/recording', 'HEAD'],
  ])('grants an allowed origin the preflight of %s', async (path, method) => {
    const res = await preflight(path, allowed, method);
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(allowed);
    expect(res.headers.get('access-control-allow-methods')).toContain(method);
    const headers = res.headers.get('access-control-allow-headers') ?? '';
    for (const h of ['authorization', 'content-type', 'x-resume-token']) {
      expect(headers).toContain(h);
    }
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    expect(res.headers.get('vary')).toMatch(/Origin/);
  });

  it('refuses a foreign origin its preflight, with no grant', async () => {
    const res = await preflight('/v1/tickets', foreign);
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: 'origin_not_allowed' });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-allow-methods')).toBeNull();
  });

  it('names the allowed origin on answers, errors included, and exposes the headers a client reads', async () => {
    const ok = await fetch(`${app.url}/v1/tickets`, {
      method: 'POST',
      headers: { origin: allowed, authorization: `Bearer ${token}` },
    });
    expect(ok.status).toBe(201);
    expect(ok.headers.get('access-control-allow-origin')).toBe(allowed);
    const exposed = ok.headers.get('access-control-expose-headers') ?? '';
    for (const h of ['ETag', 'Content-Range', 'Retry-After']) {
      expect(exposed).toContain(h);
    }
    // A refusal is readable by the page too: it can tell a bad token from a network error.
    const refused = await fetch(`${app.url}/v1/tickets`, {
      method: 'POST',
      headers: { origin: allowed, authorization: 'Bearer nope' },
    });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe(allowed);
  });

  it('gives a foreign origin no grant on ordinary requests (the token still decides access)', async () => {
    const res = await fetch(`${app.url}/v1/tickets`, {
      method: 'POST',
      headers: { origin: foreign, authorization: `Bearer ${token}` },
    });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-expose-headers')).toBeNull();
  });

  it('allows the node’s own origin without listing it', async () => {
    const own = new URL(app.url).origin;
    const res = await preflight('/v1/tickets', own);
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(own);
  });
});
