import type { NestExpressApplication } from '@nestjs/platform-express';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';

/** Where the demo's files are: the page (client/demo) and the SDK's build (client/dist). */
export interface DemoFiles {
  page: string;
  sdk: string;
  /** False until `npm run build:client` (run by `npm run build` and `npm start`) built the SDK. */
  built: boolean;
}

/**
 * Finds client/ from this module, which runs from src/demo (ts-node, tests) or dist/src/demo
 * (`npm start`): the first ancestor holding client/demo/index.html.
 */
export function findDemoFiles(from: string = __dirname): DemoFiles | null {
  for (let dir = from; ; dir = dirname(dir)) {
    const page = join(dir, 'client', 'demo');
    if (existsSync(join(page, 'index.html'))) {
      const sdk = join(dir, 'client', 'dist');
      return { page, sdk, built: existsSync(join(sdk, 'client', 'demo', 'demo-app.js')) };
    }
    if (dirname(dir) === dir) {
      return null;
    }
  }
}

/**
 * Serves the demo at /demo: the page's static files, and at /demo/sdk the SDK's build output as
 * browser ES modules (no bundler: the SDK imports zod only as a type). GET and HEAD only; anything
 * else falls through to the routes (POST /demo/token). The service's security headers apply: the
 * page has no inline script or style.
 */
export function serveDemo(app: NestExpressApplication, logger: Logger): void {
  const files = findDemoFiles();
  if (!files) {
    logger.warn('no client/demo beside the service: /demo is not served');
    return;
  }
  if (!files.built) {
    logger.warn('the SDK is not built: /demo needs `npm run build:client`');
  }
  const options = { index: 'index.html', fallthrough: true, redirect: true, dotfiles: 'ignore' };
  app.useStaticAssets(files.sdk, { ...options, prefix: '/demo/sdk', index: false });
  app.useStaticAssets(files.page, { ...options, prefix: '/demo' });
}
