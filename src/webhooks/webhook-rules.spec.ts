import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../config/config';
import { maxRetryWindowSeconds } from '../config/env.schema';
import { webhookSpecSchema, webhookUrlPolicy } from './webhook-url';
import { judge } from './webhook.service';

describe('webhook spec schema', () => {
  const secret = 's'.repeat(32);

  it.each([
    ['https://hooks.example.com/framegate?x=1', secret],
    ['http://hooks.example.com:8080/', 'whsec_' + 'A1+/='.repeat(50)],
  ])('accepts %s', (url, key) => {
    expect(webhookSpecSchema.safeParse({ url, secret: key }).success).toBe(true);
  });

  it.each([
    [{ url: 'ftp://hooks.example.com/', secret }, 'url', /https/],
    [{ url: 'hooks.example.com/x', secret }, 'url', /absolute URL/],
    [{ url: 'https://user:pw@hooks.example.com/', secret }, 'url', /credentials/],
    [{ url: `https://hooks.example.com/${'a'.repeat(2048)}`, secret }, 'url', /2048/],
    [{ url: 'https://hooks.example.com/', secret: 's'.repeat(31) }, 'secret', /32/],
    [{ url: 'https://hooks.example.com/', secret: 's'.repeat(257) }, 'secret', /256/],
    [{ url: 'https://hooks.example.com/', secret: `${secret} x` }, 'secret', /printable/],
    [{ url: 'https://hooks.example.com/', secret: `${secret}é` }, 'secret', /printable/],
    [{ url: 'https://hooks.example.com/', secret, extra: 1 }, 'extra', /./],
  ])('refuses %j at %s', (value, field, why) => {
    const result = webhookSpecSchema.safeParse(value);
    expect(result.success).toBe(false);
    const issue = result.error?.issues.find(
      (i) => i.path[0] === field || (i.code === 'unrecognized_keys' && i.keys.includes(field)),
    );
    expect(issue?.message).toMatch(why);
  });
});

describe('webhook attempt verdicts', () => {
  it.each([
    [200, 'delivered', false],
    [204, 'delivered', false],
    [299, 'delivered', false],
    [400, 'rejected', false],
    [401, 'rejected', false],
    [404, 'rejected', false],
    [410, 'rejected', false],
    [408, 'failed', true],
    [429, 'failed', true],
    [500, 'failed', true],
    [503, 'failed', true],
    [301, 'failed', true],
    [302, 'failed', true],
    [100, 'failed', true],
  ])('answers %i: %s, retry %s', (status, outcome, retry) => {
    expect(judge({ kind: 'response', status, excerpt: '' })).toEqual({ outcome, retry });
  });

  it('retries an attempt without an answer and never one the policy blocked', () => {
    expect(judge({ kind: 'error', error: 'ECONNREFUSED' })).toEqual({
      outcome: 'failed',
      retry: true,
    });
    expect(judge({ kind: 'blocked', error: 'loopback' })).toEqual({
      outcome: 'blocked',
      retry: false,
    });
  });
});

describe('webhook configuration', () => {
  it('bounds the retries: with the defaults the last attempt starts within 2 h 51 min', () => {
    const config = loadConfig({});
    expect(config.WEBHOOK_RETRY_LIMIT).toBe(10);
    expect(config.WEBHOOK_RETRY_DELAY_SECONDS).toBe(5);
    // 5 × (2 + 4 + … + 1024) s: the figure docs/webhooks.md gives.
    expect(maxRetryWindowSeconds(10, 5)).toBe(10_230);
    expect(maxRetryWindowSeconds(0, 5)).toBe(0);
    // pg-boss doubles the delay up to 2^16 only.
    expect(maxRetryWindowSeconds(18, 1)).toBe(2 ** 17 - 2 + 2 * 2 ** 16);
  });

  it('refuses retries that would outlast seven days', () => {
    expect(() =>
      loadConfig({ WEBHOOK_RETRY_LIMIT: '20', WEBHOOK_RETRY_DELAY_SECONDS: '60' }),
    ).toThrow(/WEBHOOK_RETRY_LIMIT: .*7 days/);
    expect(
      loadConfig({ WEBHOOK_RETRY_LIMIT: '14', WEBHOOK_RETRY_DELAY_SECONDS: '10' }),
    ).toBeTruthy();
  });

  it('allows http and private destinations by default outside production only', () => {
    expect(webhookUrlPolicy(loadConfig({ NODE_ENV: 'test' }))).toEqual({
      allowHttp: true,
      allowPrivate: true,
    });
    const production = loadConfig({ NODE_ENV: 'production', AUTH_JWT_SECRET: 'x'.repeat(32) });
    expect(webhookUrlPolicy(production)).toEqual({ allowHttp: false, allowPrivate: false });
    expect(
      webhookUrlPolicy(
        loadConfig({ NODE_ENV: 'test', WEBHOOK_ALLOW_PRIVATE: 'false', WEBHOOK_ALLOW_HTTP: '0' }),
      ),
    ).toEqual({ allowHttp: false, allowPrivate: false });
  });
});

describe('webhook documentation', () => {
  it('shows the verification code of docs/examples/verify-webhook.mjs, unchanged', () => {
    const root = join(__dirname, '..', '..');
    const file = readFileSync(join(root, 'docs', 'examples', 'verify-webhook.mjs'), 'utf8');
    const docs = readFileSync(join(root, 'docs', 'webhooks.md'), 'utf8');
    const code = file.slice(file.indexOf('import { createHmac')).trim();
    expect(code).toMatch(/^import[^]*timingSafeEqual\(candidate, expected\)\);\n}$/);
    expect(docs).toContain(`\`\`\`js\n${code}\n\`\`\``);
  });
});
