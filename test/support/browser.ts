import { execFile } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser, type Page } from 'playwright-core';

/** The browser globals the page functions below use (the tests' tsconfig has no DOM library). */
declare const document: {
  addEventListener(type: string, listener: (event: { detail: Taken }) => void): void;
};
declare const window: { framegateTestTaken(media: Taken): void };

/** Debian's Chromium; CI installs it (.ci/run). */
export const CHROMIUM = '/usr/bin/chromium';

const ROOT = resolve(__dirname, '..', '..');
const CLIENT_DIST = join(ROOT, 'client', 'dist');
const STAMP = join(CLIENT_DIST, '.built');
const LOCK = join(ROOT, 'client', '.build.lock');
/** A lock older than this was left by a killed run. */
const STALE_LOCK_MS = 120_000;

/** Chromium with a fake camera and microphone, granted without asking. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is missing at ${CHROMIUM}: the browser tests need Debian's chromium ` +
        '(apt-get install chromium; .ci/run installs it when it is missing)',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/**
 * The page's address for a service URL: http://localhost:PORT, a secure context (camera, microphone
 * and AudioWorklet need one) with the same host the service's origin check sees.
 */
export function localhost(url: string): string {
  const u = new URL(url);
  u.hostname = 'localhost';
  return u.origin;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * Builds the SDK into client/dist (what /demo serves) unless it is newer than its sources. Browser
 * specs run in parallel workers: one builds under a lock, the others wait for it and then find the
 * build fresh, so no page ever loads a module being rewritten.
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

/** A media message the demo page's SDK took (`framegate:taken`). */
export interface Taken {
  seq: number;
  track: number;
  bytes: number;
  pts: number;
}

/**
 * Collects what the demo announces as taken, across reloads: the listener is installed before the
 * page's own scripts on every navigation.
 */
export async function watchTaken(page: Page): Promise<Taken[]> {
  const taken: Taken[] = [];
  await page.exposeFunction('framegateTestTaken', (media: Taken) => taken.push(media));
  await page.addInitScript(() => {
    document.addEventListener('framegate:taken', (event) =>
      window.framegateTestTaken(event.detail),
    );
  });
  return taken;
}

/** Errors the page threw or logged, to show when a test fails. */
export function pageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') {
      errors.push(`console: ${msg.text()}`);
    }
  });
  page.on('requestfailed', (req) =>
    errors.push(`requestfailed: ${req.url()} ${req.failure()?.errorText}`),
  );
  return errors;
}
