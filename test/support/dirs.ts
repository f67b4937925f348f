import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fresh temporary directory that other users may traverse: as root, the embedded Postgres runs as
 * the `postgres` user and must reach its cluster below it (mkdtemp alone gives mode 0700).
 */
export function testDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `framegate-${prefix}-`));
  chmodSync(dir, 0o755);
  return dir;
}
