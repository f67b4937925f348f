import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, readEnvironment } from '../config/config';
import { tokenCommand } from './token-command';

describe('the token command printed at start', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'framegate-token-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const base = 'npm run token -- --sub alice --channel branch-app --scope "stream:publish admin"';

  it('is the bare command when the CLI finds the same configuration by itself', () => {
    expect(tokenCommand(loadConfig({}), dir)).toBe(base);
  });

  it('is the bare command when DATA_DIR comes from .env, which the CLI reads too', () => {
    writeFileSync(join(dir, '.env'), 'DATA_DIR=./elsewhere\n');
    expect(tokenCommand(loadConfig(readEnvironment({}, dir)), dir)).toBe(base);
  });

  it('names DATA_DIR (absolute) and the claims the service got from its real environment', () => {
    const config = loadConfig({
      DATA_DIR: 'my data',
      AUTH_ISSUER: 'https://idp.test/',
      AUTH_CHANNEL_CLAIM: 'app',
    });
    expect(tokenCommand(config, dir)).toBe(
      `DATA_DIR='${join(dir, 'my data')}' AUTH_ISSUER=https://idp.test/ AUTH_CHANNEL_CLAIM=app ${base}`,
    );
  });
});
