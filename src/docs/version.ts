import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The service's version, from its package.json (two levels up from src/docs and dist/src/docs). */
function packageVersion(): string {
  for (const up of ['../..', '../../..']) {
    try {
      const pkg = JSON.parse(readFileSync(join(__dirname, up, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'framegate' && pkg.version) {
        return pkg.version;
      }
    } catch {
      // Not at this level: the next one (dist/ adds one).
    }
  }
  return '0.0.0';
}

export const PACKAGE_VERSION = packageVersion();
