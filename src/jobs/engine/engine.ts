import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { EngineContext, JobOutput } from './engine-context';
import { JobCancelledError } from './errors';
import { WORK_DIR, runImagesToVideo } from './job-images-to-video';
import { runConcat } from './job-concat';
import { runExtractAudio } from './job-extract-audio';
import type { EngineJob } from './job-spec';
import { runThumbnails } from './job-thumbnails';
import { runTranscode } from './job-transcode';
import { runUpscale } from './job-upscale';
import { inspectJob, throwIfAborted } from './inspect';
import { describeOutputs, freshOutDir, type OutputFile } from './outputs';
import { ProgressMeter } from './progress';
import type { JobRun } from './video-args';

export type { EngineContext, JobOutput } from './engine-context';
export { BadInputError, JobCancelledError } from './errors';

/**
 * Probes every input of a job and throws BadInputError (with a reason for the user) for the
 * first that is not acceptable; see `inspectJob` and docs/media-jobs.md.
 */
export async function inspectInputs(job: EngineJob, ctx: EngineContext): Promise<void> {
  await guard(ctx, () => inspectJob(job, ctx));
}

/**
 * Runs a job: inspects its inputs, then writes its outputs into `dir/out/` (emptied first) and
 * describes them (hash, size, ffprobe facts). Rejects with BadInputError when the input is the
 * problem (no retry), JobCancelledError when `ctx.signal` fired, any other error when the machine
 * is (ffmpeg killed by a signal not ours, no space, no file descriptors): the queue retries those.
 * The caller removes the folder.
 */
export async function runJob(job: EngineJob, ctx: EngineContext): Promise<JobOutput[]> {
  return guard(ctx, async () => {
    const meter = new ProgressMeter((percent) => ctx.onProgress(percent));
    meter.set(0);
    const facts = await inspectJob(job, ctx);
    throwIfAborted(ctx.signal);
    await freshOutDir(ctx);
    const files = await dispatch({ job, facts, ctx, meter });
    throwIfAborted(ctx.signal);
    const outputs = await describeOutputs(ctx, files);
    await rm(join(ctx.dir, WORK_DIR), { recursive: true, force: true });
    meter.done();
    return outputs;
  });
}

function dispatch(run: JobRun<EngineJob>): Promise<OutputFile[]> {
  const { job } = run;
  switch (job.type) {
    case 'images-to-video':
      return runImagesToVideo({ ...run, job });
    case 'extract-audio':
      return runExtractAudio({ ...run, job });
    case 'transcode':
      return runTranscode({ ...run, job });
    case 'upscale':
      return runUpscale({ ...run, job });
    case 'thumbnails':
      return runThumbnails({ ...run, job });
    case 'concat':
      return runConcat({ ...run, job });
  }
}

/** Whatever failed, a fired signal makes the outcome a cancellation. */
async function guard<T>(ctx: EngineContext, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw ctx.signal.aborted && !(err instanceof JobCancelledError) ? new JobCancelledError() : err;
  }
}
