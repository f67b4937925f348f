import 'reflect-metadata';
import { existsSync } from 'node:fs';
import { startApp, type StartedApp } from './app.factory';
import { installUnexpectedErrorPolicy } from './common/unexpected-error';
import { ConfigError } from './config/config';
import { DataDirInUseError } from './database/data-dir-lock';

async function main(): Promise<void> {
  // A .env in the working directory fills in what the real environment leaves unset.
  if (existsSync('.env')) {
    process.loadEnvFile('.env');
  }
  let started: StartedApp;
  try {
    started = await startApp(process.env);
  } catch (err) {
    // Expected boot failures get one clear line, not a stack trace.
    if (err instanceof ConfigError || err instanceof DataDirInUseError) {
      process.stderr.write(`framegate: ${err.message}\n`);
    } else {
      process.stderr.write(
        `framegate: failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
      );
    }
    process.exit(1);
  }
  let stopping = false;
  /** Graceful stop: drain, then exit with `exitCode` (non-zero when a bug brought us here). */
  const stop = (cause: string, exitCode: number): void => {
    if (stopping) {
      return;
    }
    stopping = true;
    started.logger.info({ cause }, 'shutting down');
    const timer = setTimeout(() => {
      started.logger.error('shutdown timed out');
      process.exit(1);
    }, started.config.SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    started.close().then(
      () => process.exit(exitCode),
      (err: unknown) => {
        started.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM', 0));
  process.on('SIGINT', () => stop('SIGINT', 0));
  installUnexpectedErrorPolicy(process, {
    logger: started.logger,
    stop: (cause) => stop(cause, 1),
  });
}

void main();
