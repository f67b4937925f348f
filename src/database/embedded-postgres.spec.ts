import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertReachableByOthers } from './embedded-postgres';

describe('assertReachableByOthers', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'framegate-reach-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('names the first directory on the way that others cannot search, and the way out', () => {
    const hidden = join(dir, 'home');
    mkdirSync(join(hidden, 'app', 'node_modules'), { recursive: true });
    chmodSync(dir, 0o755);
    chmodSync(hidden, 0o700);
    expect(() => assertReachableByOthers(join(hidden, 'app', 'node_modules'), 'do X')).toThrow(
      `the postgres user cannot reach ${join(hidden, 'app', 'node_modules')}: ${hidden} is not ` +
        `searchable by others (chmod o+x ${hidden}, or do X)`,
    );
  });

  it('passes a path every directory of which others can search', () => {
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'data'), { mode: 0o755 });
    expect(() => assertReachableByOthers(join(dir, 'data'), 'do X')).not.toThrow();
  });
});
