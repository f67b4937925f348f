/**
 * The input is the problem: the job fails once, without retries, and `message` is shown to the
 * user (it names the input and the reason, never a path outside the job's folder).
 */
export class BadInputError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BadInputError';
  }
}

/** The job's AbortSignal fired: its processes are gone and it produced nothing. */
export class JobCancelledError extends Error {
  constructor(message = 'job cancelled') {
    super(message);
    this.name = 'JobCancelledError';
  }
}

/** errno codes that say the machine, not the input, is the problem: the queue retries. */
const TRANSIENT_ERRNO = new Set([
  'ENOSPC',
  'EMFILE',
  'ENFILE',
  'ENOMEM',
  'EAGAIN',
  'EIO',
  'EDQUOT',
]);

export function isTransientErrno(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && TRANSIENT_ERRNO.has(code);
}

/** What ffmpeg prints when the machine, not the input, failed it (its strerror texts). */
const TRANSIENT_STDERR =
  /No space left on device|Too many open files|Cannot allocate memory|Resource temporarily unavailable|Disk quota exceeded|Input\/output error/i;

export function isTransientStderr(text: string): boolean {
  return TRANSIENT_STDERR.test(text);
}
