import 'reflect-metadata';
import { startApp, type StartedApp } from './app.factory';
import { ConfigError, readEnvironment } from './config/config';
import { DataDirInUseError } from './database/data-dir-lock';

async function main(): Promise<void> {
  let started: StartedApp;
  try {
    // The one loader of the service and the CLIs: a .env in the working directory fills in what
    // the real environment leaves unset.
    started = await startApp(readEnvironment());
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
  const stop = (signal: string): void => {
    if (stopping) {
      return;
    }
    stopping = true;
    started.logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      started.logger.error('shutdown timed out');
      process.exit(1);
    }, started.config.SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    started.close().then(
      () => process.exit(0),
      (err: unknown) => {
        started.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
