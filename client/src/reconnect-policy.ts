import { CloseCode } from '../../src/protocol/close-codes.js';

/** Reconnect timing, as LiveKit and centrifuge-js make it configurable. */
export interface BackoffOptions {
  /** Delay before the first retry. */
  initialDelayMs: number;
  /** No delay exceeds this. */
  maxDelayMs: number;
  /** Each retry waits this many times longer than the one before. */
  factor: number;
  /**
   * Fraction of each delay drawn at random (0: none, 1: anywhere from 0 to the delay), so that
   * clients cut off together do not all come back in the same millisecond.
   */
  jitter: number;
  /** Retries in a row without a session reopened, before the client gives up. */
  maxAttempts: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  initialDelayMs: 500,
  maxDelayMs: 15_000,
  factor: 2,
  jitter: 0.5,
  maxAttempts: 12,
};

/** The delay before retry number `attempt` (1-based). `random` is in [0, 1). */
export function backoffDelay(
  options: BackoffOptions,
  attempt: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(
    options.maxDelayMs,
    options.initialDelayMs * options.factor ** Math.max(0, attempt - 1),
  );
  return Math.round(ceiling * (1 - options.jitter * random()));
}

/** What the client does when its WebSocket closes with a code. */
export type CloseAction =
  /** The session is finished (`closed` came first). */
  | 'done'
  /** Resume after a backoff delay. */
  | 'reconnect'
  /** Ask the app for a fresh access token, then resume. */
  | 'refresh_token'
  /** Stop with an error: retrying cannot help. */
  | 'final';

/**
 * The SDK's reading of each close code (docs/client.md has the table). 1006 is the code a client
 * sees when the connection is lost without a close frame (network loss, a proxy cut).
 */
export function closeAction(code: number): CloseAction {
  switch (code as CloseCode) {
    case CloseCode.Normal:
      return 'done';
    case CloseCode.Internal:
    case CloseCode.Restart:
    case CloseCode.TryAgainLater:
    case CloseCode.HeartbeatTimeout:
      return 'reconnect';
    case CloseCode.TokenExpired:
      return 'refresh_token';
    case CloseCode.TooLarge:
    case CloseCode.Protocol:
    case CloseCode.Kicked:
    case CloseCode.UnknownSession:
    case CloseCode.Replaced:
    case CloseCode.Quota:
      return 'final';
    default:
      // 1001 (going away), 1006 (abnormal), 1005 (no status) and codes a newer server may add:
      // resuming is safe (the server drops what it already stored), giving up is not.
      return 'reconnect';
  }
}
