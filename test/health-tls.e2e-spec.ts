import { testDir } from './support/dirs';
import { rmSync, writeFileSync } from 'node:fs';
import { type IncomingHttpHeaders, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { call, startTestApp, type TestApp } from './support/app';
import { PgProcess } from './support/pg-process';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

describe('health', () => {
  const admin = hsToken({ sub: 'ops', scope: 'admin' });
  let dir: string;
  let pg: PgProcess;
  let app: TestApp;

  beforeAll(async () => {
    dir = testDir('health');
    pg = new PgProcess(join(dir, 'postgres'), 0);
    const url = await pg.start();
    app = await startTestApp({ databaseUrl: url });
  });
  afterAll(async () => {
    await app.close();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is live and ready with every check named in terminus JSON for an admin', async () => {
    const live = await call(app.url, 'GET', '/health/live');
    expect(live.status).toBe(200);
    expect(live.body.status).toBe('ok');
    const ready = await call(app.url, 'GET', '/health/ready', { token: admin });
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({
      status: 'ok',
      info: {
        database: { status: 'up' },
        disk: { status: 'up' },
        ffmpeg: { status: 'up', libx264: true },
        audit: { status: 'up', backlog: 0 },
      },
    });
  });

  it('shows anonymous callers and non-admins the status only', async () => {
    for (const token of [undefined, hsToken({ scope: 'stream:publish' })]) {
      const ready = await call(app.url, 'GET', '/health/ready', { token });
      expect(ready).toMatchObject({ status: 200, body: { status: 'ok' } });
      expect(Object.keys(ready.body)).toEqual(['status']);
    }
    const refused = await call(app.url, 'GET', '/health/ready', { token: 'not-a-token' });
    expect(refused.status).toBe(401);
  });

  it('is 503 naming the database while it is down, and 200 again after', async () => {
    await pg.stop();
    const anonymous = await call(app.url, 'GET', '/health/ready');
    expect(anonymous).toMatchObject({ status: 503, body: { status: 'error' } });
    expect(Object.keys(anonymous.body)).toEqual(['status']);
    const down = await call(app.url, 'GET', '/health/ready', { token: admin });
    expect(down.status).toBe(503);
    expect(down.body.status).toBe('error');
    expect(down.body.error).toHaveProperty('database.status', 'down');
    expect(down.body.info).toHaveProperty('disk.status', 'up');
    // Liveness does not depend on the database.
    expect((await call(app.url, 'GET', '/health/live')).status).toBe(200);

    await pg.start();
    await waitFor(async () => (await call(app.url, 'GET', '/health/ready')).status === 200);
  });
});

describe('TLS', () => {
  let dir: string;
  let app: TestApp;
  let cert: string;

  beforeAll(async () => {
    dir = testDir('tls');
    const pems = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
      keySize: 2048,
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    });
    cert = pems.cert;
    writeFileSync(join(dir, 'tls.crt'), pems.cert);
    writeFileSync(join(dir, 'tls.key'), pems.private);
    app = await startTestApp({
      env: { TLS_CERT_FILE: join(dir, 'tls.crt'), TLS_KEY_FILE: join(dir, 'tls.key') },
    });
  });
  afterAll(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves HTTPS with the configured certificate, and HSTS', async () => {
    expect(app.url).toMatch(/^https:\/\//);
    const res = await new Promise<{ status: number; headers: IncomingHttpHeaders }>(
      (resolve, reject) => {
        const req = httpsRequest(`${app.url}/health/live`, { ca: cert }, (r) => {
          r.resume();
          resolve({ status: r.statusCode ?? 0, headers: r.headers });
        });
        req.on('error', reject);
        req.end();
      },
    );
    expect(res.status).toBe(200);
    expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    expect(res.headers['content-security-policy']).toContain('upgrade-insecure-requests');
  });

  it('does not answer plain HTTP on the same port', async () => {
    const plain = app.url.replace('https://', 'http://');
    const outcome = await new Promise<string>((resolve) => {
      const req = httpRequest(`${plain}/health/live`, (res) => {
        res.resume();
        resolve(`status ${res.statusCode}`);
      });
      req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
      req.on('error', (err) => resolve(`error ${err.message}`));
      req.end();
    });
    expect(outcome).not.toBe('status 200');
    expect(outcome).toMatch(/^(error|status 400)/);
  });
});
