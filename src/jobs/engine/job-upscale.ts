import { BadInputError } from './errors';
import { runFfmpeg } from './ffmpeg-run';
import type { JobSpecOf } from './job-spec';
import { cpuClassOf, inputArgs } from './inspect';
import { MAX_INPUT_PIXELS } from './limits';
import { outputFile, OUT_DIR } from './outputs';
import { runSharp } from './sharp-worker';
import {
  AAC_ARGS,
  checkCap,
  even,
  type JobRunner,
  MP4_ARGS,
  UPSCALE_CRF,
  WORK_PERCENT,
  x264Args,
} from './video-args';

/** Target sides may differ from the source's aspect by this much (rounding to even sides). */
const ASPECT_TOLERANCE = 0.01;
/** Quality of an upscaled JPEG or WebP. */
const IMAGE_QUALITY = 92;
const IMAGE_OUTPUTS = {
  jpeg_pipe: { format: 'jpeg', name: 'image.jpg' },
  png_pipe: { format: 'png', name: 'image.png' },
  webp_pipe: { format: 'webp', name: 'image.webp' },
} as const;

/**
 * A picture made larger with a Lanczos filter: an image by sharp (lanczos3; measured against
 * ffmpeg's `scale=flags=lanczos` in docs/media-jobs.md: equal SSIM, faster), in its own format;
 * a video by ffmpeg's lanczos scaler into H.264 (crf 18), its sound kept as AAC. The target
 * keeps the source's aspect ratio and is never smaller than the source.
 */
export const runUpscale: JobRunner<JobSpecOf<'upscale'>> = async ({ job, facts, ctx, meter }) => {
  const input = facts.media.get(job.input.file);
  if (!input?.video) {
    throw new Error('upscale: inputs were not inspected');
  }
  const src = input.video;
  const target = targetSize(job, src);
  if (target.width < src.width || target.height < src.height) {
    throw new BadInputError(
      `upscale only enlarges: ${target.width}×${target.height} is smaller than the input's ${src.width}×${src.height} (use transcode to shrink a video)`,
    );
  }
  checkCap(target, 'the upscaled picture');
  if (input.image) {
    const out = IMAGE_OUTPUTS[input.demuxer as keyof typeof IMAGE_OUTPUTS];
    meter.stage(0, WORK_PERCENT, 1);
    await runSharp(
      {
        op: 'resize',
        from: `./${input.name}`,
        to: `./${OUT_DIR}/${out.name}`,
        width: target.width,
        height: target.height,
        format: out.format,
        quality: IMAGE_QUALITY,
        maxPixels: MAX_INPUT_PIXELS,
      },
      { cwd: ctx.dir, signal: ctx.signal, cpuClass: cpuClassOf(ctx) },
    );
    return [outputFile(out.name, true)];
  }
  meter.stage(0, WORK_PERCENT, input.durationS);
  await runFfmpeg(ctx, {
    args: [
      ...inputArgs(input.name, input.demuxer),
      '-map',
      `0:${src.index}`,
      ...(input.audio ? ['-map', `0:${input.audio.index}`, ...AAC_ARGS] : []),
      '-vf',
      `scale=${target.width}:${target.height}:flags=lanczos,setsar=1,format=yuv420p`,
      ...x264Args(UPSCALE_CRF),
      '-map_metadata',
      '-1',
      ...MP4_ARGS,
      `./${OUT_DIR}/video.mp4`,
    ],
    label: 'upscale',
    meter,
  });
  return [outputFile('video.mp4', true)];
};

/** The size asked for: a factor, one side (the other from the aspect), or both (same aspect). */
function targetSize(
  job: JobSpecOf<'upscale'>,
  src: { width: number; height: number },
): { width: number; height: number } {
  if (job.scale !== undefined) {
    return { width: even(src.width * job.scale), height: even(src.height * job.scale) };
  }
  if (job.width !== undefined && job.height !== undefined) {
    const asked = job.width / job.height;
    const source = src.width / src.height;
    if (Math.abs(asked / source - 1) > ASPECT_TOLERANCE) {
      throw new BadInputError(
        `${job.width}×${job.height} would change the input's aspect ratio (${src.width}×${src.height}); give one side or a scale`,
      );
    }
    return { width: job.width, height: job.height };
  }
  if (job.width !== undefined) {
    return { width: job.width, height: even((job.width * src.height) / src.width) };
  }
  if (job.height !== undefined) {
    return { width: even((job.height * src.width) / src.height), height: job.height };
  }
  throw new BadInputError('upscale needs a width, a height or a scale');
}
