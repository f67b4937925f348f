import type { NestExpressApplication } from '@nestjs/platform-express';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';

/** Where the console's files are: its page (client/console) and its build (client/dist). */
export interface ConsoleFiles {
  page: string;
  scripts: string;
  /** False until `npm run build:client` (run by `npm run build` and `npm start`) built it. */
  built: boolean;
}

/**
 * Finds client/ from this module, which runs from src/console (ts-node, tests) or
 * dist/src/console (`npm start`): the first ancestor holding client/console/index.html.
 */
export function findConsoleFiles(from: string = __dirname): ConsoleFiles | null {
  for (let dir = from; ; dir = dirname(dir)) {
    const page = join(dir, 'client', 'console');
    if (existsSync(join(page, 'index.html'))) {
      const scripts = join(dir, 'client', 'dist', 'client', 'console');
      return { page, scripts, built: existsSync(join(scripts, 'console-app.js')) };
    }
    if (dirname(dir) === dir) {
      return null;
    }
  }
}

/**
 * Serves the operations console at /console: the page and its stylesheet, and at /console/js its
 * modules as the client build compiled them (browser ES modules, no bundler). Static files only,
 * GET and HEAD: the page talks to the admin API (/v1/admin, scope `admin`) with the token the
 * operator pastes, so serving it needs no credentials and grants nothing. The service's security
 * headers apply: the page has no inline script or style.
 */
export function serveConsole(app: NestExpressApplication, logger: Logger): void {
  const files = findConsoleFiles();
  if (!files) {
    logger.warn('no client/console beside the service: /console is not served');
    return;
  }
  if (!files.built) {
    logger.warn('the console is not built: /console needs `npm run build:client`');
  }
  const options = { index: 'index.html', fallthrough: true, redirect: true, dotfiles: 'ignore' };
  app.useStaticAssets(files.scripts, { ...options, prefix: '/console/js', index: false });
  app.useStaticAssets(files.page, { ...options, prefix: '/console' });
}
