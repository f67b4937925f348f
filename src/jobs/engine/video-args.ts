import type { EngineContext } from './engine-context';
import { BadInputError } from './errors';
import type { ProgressMeter } from './progress';
import type { JobFacts } from './inspect';
import { MAX_OUTPUT_LONG_SIDE, MAX_OUTPUT_SHORT_SIDE, MIN_OUTPUT_SIDE } from './limits';
import type { OutputFile } from './outputs';

/** What one job type's runner gets. */
export interface JobRun<Spec> {
  job: Spec;
  facts: JobFacts;
  ctx: EngineContext;
  /** The runner's ffmpeg runs share 0..95 of the job; describing the outputs is the rest. */
  meter: ProgressMeter;
}

export type JobRunner<Spec> = (run: JobRun<Spec>) => Promise<OutputFile[]>;

/** Share of the progress the runner's processes cover; hashing and probing outputs the rest. */
export const WORK_PERCENT = 95;

/**
 * x264 for every H.264 output: `veryfast`, which docs/performance.md measured as the best
 * speed for its quality on these machines (and what live recording uses), constant quality,
 * 4:2:0 for every player, and the index at the front so a browser plays while downloading.
 */
export const X264_PRESET = 'veryfast';
export const DEFAULT_CRF = 23;
/** Upscaled video keeps more of what the scaler adds. */
export const UPSCALE_CRF = 18;
export const AAC_ARGS = ['-c:a', 'aac', '-b:a', '128k'];
export const MP4_ARGS = ['-movflags', '+faststart', '-f', 'mp4'];

export function x264Args(crf: number): string[] {
  return ['-c:v', 'libx264', '-preset', X264_PRESET, '-crf', String(crf), '-pix_fmt', 'yuv420p'];
}

/** The nearest even number not above `n`, at least MIN_OUTPUT_SIDE. */
export function even(n: number): number {
  return Math.max(MIN_OUTPUT_SIDE, 2 * Math.floor(n / 2));
}

/** `width`×`height` shrunk (aspect kept) to fit the output cap, made even. */
export function capSize(width: number, height: number): { width: number; height: number } {
  const long = Math.max(width, height);
  const short = Math.min(width, height);
  const factor = Math.min(1, MAX_OUTPUT_LONG_SIDE / long, MAX_OUTPUT_SHORT_SIDE / short);
  return { width: even(width * factor), height: even(height * factor) };
}

/** Throws when a computed size is beyond the output cap. */
export function checkCap(size: { width: number; height: number }, what: string): void {
  const long = Math.max(size.width, size.height);
  const short = Math.min(size.width, size.height);
  if (long > MAX_OUTPUT_LONG_SIDE || short > MAX_OUTPUT_SHORT_SIDE) {
    throw new BadInputError(
      `${what} would be ${size.width}×${size.height}, beyond the ${MAX_OUTPUT_LONG_SIDE}×${MAX_OUTPUT_SHORT_SIDE} output limit`,
    );
  }
}

/**
 * Scales a picture to fit inside width×height, aspect kept, centred on black: inputs of other
 * sizes or shapes (a portrait phone clip among landscape ones) keep their proportions.
 */
export function fitFilter(width: number, height: number, flags = 'bicubic'): string {
  return (
    `scale=${width}:${height}:force_original_aspect_ratio=decrease:flags=${flags},` +
    `pad=${width}:${height}:(ow-iw)/2:(oh-ih)/2,setsar=1`
  );
}

/** ffmpeg's duration syntax: seconds with millisecond precision. */
export function seconds(s: number): string {
  return s.toFixed(3);
}
