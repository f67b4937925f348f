/**
 * Waits for `work` at most `ms`: resolves with its value, or with `fallback` when the time is up
 * (the work goes on in the background; its failure is the caller's to handle on `work`).
 */
export function withDeadline<T, F>(work: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
