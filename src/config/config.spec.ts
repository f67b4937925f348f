import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, readEnvironment } from './config';
import { envSchema } from './env.schema';

describe('loadConfig', () => {
  it('applies the documented defaults to an empty environment', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      NODE_ENV: 'development',
      PORT: 8080,
      HOST: '0.0.0.0',
      DATA_DIR: './data',
      DB_MIGRATE: true,
      AUTH_CHANNEL_CLAIM: 'channel',
      TICKET_TTL_MS: 60_000,
      TRUST_PROXY: false,
      ALLOWED_ORIGINS: [],
      ACK_INTERVAL_MS: 200,
      ACK_MAX_FRAMES: 50,
      MAX_FRAME_BYTES: 2 * 1024 * 1024,
    });
    expect(config.DATABASE_URL).toBeUndefined();
  });

  it('treats empty strings as unset', () => {
    expect(loadConfig({ PORT: '', DATABASE_URL: '' }).PORT).toBe(8080);
  });

  it('parses lists, booleans and trust-proxy forms', () => {
    expect(
      loadConfig({ ALLOWED_ORIGINS: 'https://a.test, https://b.test' }).ALLOWED_ORIGINS,
    ).toEqual(['https://a.test', 'https://b.test']);
    expect(loadConfig({ DB_MIGRATE: 'false' }).DB_MIGRATE).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).TRUST_PROXY).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '2' }).TRUST_PROXY).toBe(2);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).TRUST_PROXY).toEqual([
      'loopback',
      '10.0.0.0/8',
    ]);
  });

  it('lists every bad variable at once', () => {
    let error: ConfigError | undefined;
    try {
      loadConfig({
        PORT: '70000',
        DATABASE_URL: 'http://db',
        AUTH_JWT_SECRET: 'short',
        TRUST_PROXY: 'some proxy',
        TLS_CERT_FILE: '/nonexistent/cert.pem',
      });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const names = error?.problems.map((p) => p.split(':')[0]);
    expect(names).toEqual(
      expect.arrayContaining([
        'PORT',
        'DATABASE_URL',
        'AUTH_JWT_SECRET',
        'TRUST_PROXY',
        'TLS_CERT_FILE',
      ]),
    );
  });

  it('never prints a secret or a database password', () => {
    try {
      loadConfig({ AUTH_JWT_SECRET: 'hunter2', DATABASE_URL: 'mysql://u:pa55word@db/x' });
      throw new Error('expected a ConfigError');
    } catch (err) {
      const message = (err as Error).message;
      expect(message).not.toContain('hunter2');
      expect(message).not.toContain('pa55word');
    }
  });

  it('needs TLS certificate and key together', () => {
    expect(() => loadConfig({ TLS_CERT_FILE: __filename })).toThrow(/TLS_KEY_FILE/);
  });

  it('refuses production without auth configuration', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/AUTH_JWKS_URL/);
    expect(
      loadConfig({ NODE_ENV: 'production', AUTH_JWKS_URL: 'https://idp.test/jwks' }).NODE_ENV,
    ).toBe('production');
  });
});

describe('readEnvironment (the one loader of the service and the CLIs)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'framegate-env-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('fills in from .env what the real environment leaves unset; the real environment wins', () => {
    writeFileSync(join(dir, '.env'), 'DATA_DIR=./elsewhere\nPORT=9000\n# a comment\n');
    const env = readEnvironment({ PORT: '7000' }, dir);
    expect(env).toMatchObject({ DATA_DIR: './elsewhere', PORT: '7000' });
    expect(loadConfig(env).DATA_DIR).toBe('./elsewhere');
  });

  it('reads the real environment alone when there is no .env', () => {
    expect(readEnvironment({ PORT: '7000' }, dir)).toEqual({ PORT: '7000' });
  });
});

describe('configuration documentation', () => {
  const names = Object.keys(envSchema.shape);
  const read = (file: string) => readFileSync(join(__dirname, '..', '..', file), 'utf8');

  it('lists every variable in the README configuration table', () => {
    const readme = read('README.md');
    const missing = names.filter((n) => !readme.includes(`\`${n}\``));
    expect(missing).toEqual([]);
  });

  it('lists every variable in .env.example', () => {
    const example = read('.env.example');
    const missing = names.filter((n) => !new RegExp(`^#? ?${n}=`, 'm').test(example));
    expect(missing).toEqual([]);
  });
});
