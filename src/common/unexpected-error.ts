/** The two process events that mean a bug: something threw or rejected with nobody to handle it. */
export type UnexpectedEvent = 'unhandledRejection' | 'uncaughtException';

export interface UnexpectedErrorPolicy {
  logger: {
    fatal(obj: Record<string, unknown>, msg: string): void;
    error(obj: Record<string, unknown>, msg: string): void;
  };
  /**
   * Drains and exits non-zero (the same graceful stop as SIGTERM, with another exit code); called
   * once, for the first unexpected error.
   */
  stop(cause: UnexpectedEvent): void;
}

interface ProcessEvents {
  on(event: UnexpectedEvent, listener: (err: unknown) => void): unknown;
  off(event: UnexpectedEvent, listener: (err: unknown) => void): unknown;
}

/**
 * Process-wide policy for the truly unexpected. Every failure we know of is handled where it
 * happens (a session's recorder, its spool); what reaches here is a bug, and the process state
 * can no longer be trusted, so it is logged with its context and the node drains: sessions get
 * their final acks and 1012 and resume elsewhere, and a supervisor restarts the process. Later
 * errors while draining are only logged. Returns a function that removes the listeners.
 */
export function installUnexpectedErrorPolicy(
  proc: ProcessEvents,
  policy: UnexpectedErrorPolicy,
): () => void {
  let stopping = false;
  const handle = (event: UnexpectedEvent) => (err: unknown) => {
    const context = { err, event, pid: process.pid, draining: stopping };
    if (event === 'uncaughtException') {
      policy.logger.fatal(context, 'uncaught exception: draining and exiting');
    } else {
      policy.logger.error(context, 'unhandled promise rejection: draining and exiting');
    }
    if (!stopping) {
      stopping = true;
      policy.stop(event);
    }
  };
  const onRejection = handle('unhandledRejection');
  const onException = handle('uncaughtException');
  proc.on('unhandledRejection', onRejection);
  proc.on('uncaughtException', onException);
  return () => {
    proc.off('unhandledRejection', onRejection);
    proc.off('uncaughtException', onException);
  };
}
