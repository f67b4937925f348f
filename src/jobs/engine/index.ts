/** The media job engine: job specs, input distrust, ffmpeg runs with progress and cancel. */
export {
  engineJobSchema,
  JOB_TYPES,
  jobSpecSchema,
  localImagesSchema,
  localSingleSchema,
  relName,
  type EngineJob,
  type JobSpecOf,
  type JobType,
  type LocalImages,
  type LocalSingle,
} from './job-spec';
export { inspectInputs, runJob, type EngineContext, type JobOutput } from './engine';
export { BadInputError, JobCancelledError } from './errors';
export { framesFromSpool, type SpoolFrameLimits, type SpoolFrames } from './spool-frames';
export * as engineLimits from './limits';
