/** The service under a benchmark: stopping it, and what it logged. */
import { performance } from 'node:perf_hooks';
import type { ServiceProcess } from '../../test/support/service-process';

/** A service that ignores SIGTERM this long is killed. */
const STOP_TIMEOUT_MS = 30_000;

/** SIGTERM, then SIGKILL after STOP_TIMEOUT_MS. */
export async function stopService(
  service: ServiceProcess,
): Promise<{ ms: number; code: number | null; killed: boolean }> {
  const started = performance.now();
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    service.child.kill('SIGKILL');
  }, STOP_TIMEOUT_MS);
  const exit = await service.stop();
  clearTimeout(timer);
  return { ms: Math.round(performance.now() - started), code: exit.code, killed };
}

/** Warnings and errors the service logged (pino levels 40+), counted by message. */
export function logProblems(output: string): {
  warn: number;
  error: number;
  byMessage: Record<string, number>;
  first: string[];
} {
  const problems = {
    warn: 0,
    error: 0,
    byMessage: {} as Record<string, number>,
    first: [] as string[],
  };
  for (const line of output.split('\n')) {
    const level = /^\{"level":(\d+)/.exec(line);
    if (!level || Number(level[1]) < 40) {
      continue;
    }
    if (Number(level[1]) >= 50) {
      problems.error++;
    } else {
      problems.warn++;
    }
    const msg = /"msg":"([^"]*)"/.exec(line)?.[1] ?? 'unknown';
    problems.byMessage[msg] = (problems.byMessage[msg] ?? 0) + 1;
    if (problems.first.length < 5) {
      problems.first.push(line.slice(0, 600));
    }
  }
  return problems;
}
