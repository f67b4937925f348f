import { join, resolve } from 'node:path';

/** Inputs of a job, as submitted (uploads, linked recordings and spools). */
export const IN_DIR = 'in';
/** Where a completed job's outputs are, moved there from the run that made them. */
export const OUT_DIR = 'out';
/** One folder per attempt, named by its run token (see JobRunner). */
const RUNS_DIR = 'runs';

/**
 * The folders of the media jobs under DATA_DIR/jobs: one per job, `<id>/in` (inputs),
 * `<id>/runs/<token>` (an attempt: hard links to the inputs and the engine's `out/`), `<id>/out`
 * (the outputs of the attempt that completed the job).
 */
export class JobPaths {
  readonly root: string;

  constructor(dataDir: string) {
    this.root = resolve(dataDir, 'jobs');
  }

  job(id: string): string {
    return join(this.root, id);
  }

  inputs(id: string): string {
    return join(this.root, id, IN_DIR);
  }

  outputs(id: string): string {
    return join(this.root, id, OUT_DIR);
  }

  runs(id: string): string {
    return join(this.root, id, RUNS_DIR);
  }

  run(id: string, token: string): string {
    return join(this.root, id, RUNS_DIR, token);
  }
}
