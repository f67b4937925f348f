import 'reflect-metadata';
import { startApp, type StartedApp } from './app.factory';
import { installUnexpectedErrorPolicy } from './common/unexpected-error';
import { ConfigError, readEnvironment } from './config/config';
import { DataDirInUseError } from './database/data-dir-lock';

async function main(): Promise<void> {
  // A signal during boot is held until the boot is done, then drains as usual: dying on it
  // mid-boot would leave what the boot started (the embedded Postgres) behind. A second one
  // during boot means "now": exit at once.
  let pending: string | undefined;
  let stop = (signal: string): void => {
    if (pending !== undefined) {
      process.exit(1);
    }
    pending = signal;
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
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
  /** Graceful stop: drain, then exit with `exitCode` (non-zero when a bug brought us here). */
  const drain = (signal: string, exitCode: number): void => {
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
      () => process.exit(exitCode),
      (err: unknown) => {
        started.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  stop = (signal: string): void => drain(signal, 0);
  installUnexpectedErrorPolicy(process, {
    logger: started.logger,
    stop: (cause) => drain(cause, 1),
  });
  watchNpmParent(() => stop('parent_exited'));
  if (pending !== undefined) {
    stop(pending);
  }
}

/** How often a service started by npm checks that npm is still its parent. */
const PARENT_POLL_MS = 1000;

/**
 * Under `npm start` the `start` script execs node, so npm's child is this process and npm hands
 * it the SIGTERM or SIGINT it gets. Should npm go without doing so (SIGKILL, a crash), this
 * process is reparented: it notices and drains rather than serve on under PID 1. Started any
 * other way (systemd, a container, nohup), its parent exiting means nothing.
 */
function watchNpmParent(onGone: () => void): void {
  if (process.env.npm_lifecycle_event === undefined) {
    return;
  }
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      onGone();
    }
  }, PARENT_POLL_MS);
  timer.unref();
}

void main();
