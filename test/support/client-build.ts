import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const ROOT = resolve(__dirname, '..', '..');
const CLIENT_DIST = join(ROOT, 'client', 'dist');
const STAMP = join(CLIENT_DIST, '.built');
const LOCK = join(ROOT, 'client', '.build.lock');
/** A lock older than this was left by a killed run. */
const STALE_LOCK_MS = 120_000;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * Builds the SDK into client/dist (what /demo serves and the CLI runs) unless it is newer than its
 * sources. Suites run in parallel workers: one builds under a lock, the others wait for it and
 * then find the build fresh, so no page or CLI ever loads a module while tsc rewrites it.
 */
export async function ensureClientBuilt(): Promise<void> {
  const deadline = Date.now() + 5 * STALE_LOCK_MS;
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw err;
      }
      if (Date.now() - statSync(LOCK, { throwIfNoEntry: false })!.mtimeMs > STALE_LOCK_MS) {
        rmSync(LOCK, { recursive: true, force: true });
      } else if (Date.now() > deadline) {
        throw new Error(`${LOCK} is held too long`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    const sources = Math.max(
      newestMtime(join(ROOT, 'client', 'src')),
      newestMtime(join(ROOT, 'client', 'demo')),
      newestMtime(join(ROOT, 'client', 'console')),
      newestMtime(join(ROOT, 'src', 'protocol')),
      statSync(join(ROOT, 'client', 'tsconfig.json')).mtimeMs,
      statSync(join(ROOT, 'client', 'tsconfig.build.json')).mtimeMs,
    );
    if ((statSync(STAMP, { throwIfNoEntry: false })?.mtimeMs ?? 0) > sources) {
      return;
    }
    await promisify(execFile)(
      process.execPath,
      [require.resolve('typescript/bin/tsc'), '-p', join(ROOT, 'client', 'tsconfig.build.json')],
      { cwd: ROOT },
    );
    writeFileSync(STAMP, '');
    const now = new Date();
    utimesSync(STAMP, now, now);
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}
