/** What a capacity search needs of a trial. */
export interface Judged {
  sessions: number;
  keptUp: boolean;
  /** Others used the machine meanwhile: a failure then says nothing about the server. */
  disturbed: boolean;
}

export interface SearchOptions {
  /** Where the search starts (clamped to 1..maxSessions). */
  start: number;
  maxSessions: number;
  /** Trials, at most (a disturbed failure run again is not counted). */
  maxTrials: number;
  /** A failed trial that others disturbed is run again, this many times per search. */
  disturbedRetries: number;
  progress: (line: string) => void;
}

/**
 * The largest N that keeps up: from `start`, ±10 % until both sides are known, then bisection.
 * `trial(n)` runs one trial; null ends the search (the trial could not run). An N already judged
 * is not run again.
 */
export async function searchLargestKeptUp<T extends Judged>(
  options: SearchOptions,
  trial: (n: number, index: number) => Promise<T | null>,
): Promise<{ keptUp: number; didNotKeepUp: number | null; trials: T[] }> {
  const trials: T[] = [];
  let passMax = 0;
  let failMin = Number.POSITIVE_INFINITY;
  let retries = 0;
  let n = clamp(options.start, 1, options.maxSessions);
  const step = Math.max(1, Math.round(0.1 * n));
  for (let t = 0; t < options.maxTrials; t++) {
    const result = await trial(n, t);
    if (!result) {
      break;
    }
    trials.push(result);
    if (result.keptUp) {
      passMax = Math.max(passMax, n);
    } else if (result.disturbed && retries < options.disturbedRetries) {
      // Not counted: the machine was not ours; the same N again.
      retries++;
      t--;
      options.progress('  disturbed by other processes: running this trial again');
      continue;
    } else {
      failMin = Math.min(failMin, n);
    }
    let next: number;
    if (failMin === Number.POSITIVE_INFINITY) {
      next = n + step;
    } else if (passMax === 0) {
      next = n - step;
    } else {
      next = Math.floor((passMax + failMin) / 2);
    }
    next = clamp(next, 1, options.maxSessions);
    if (
      next <= passMax ||
      next >= failMin ||
      trials.some((r) => r.sessions === next && (r.keptUp || !r.disturbed))
    ) {
      break;
    }
    n = next;
  }
  return {
    keptUp: passMax,
    didNotKeepUp: Number.isFinite(failMin) ? failMin : null,
    trials,
  };
}

export function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
