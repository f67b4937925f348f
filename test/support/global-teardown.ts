import { rmSync } from 'node:fs';
import type { PgProcess } from './pg-process';

export default async function globalTeardown(): Promise<void> {
  const started = (globalThis as Record<string, unknown>).__FRAMEGATE_PG__ as
    { pg: PgProcess; dir: string } | undefined;
  if (started) {
    await started.pg.stop();
    rmSync(started.dir, { recursive: true, force: true });
  }
}
