import { BadInputError } from './errors';
import { requireEncoder, runFfmpeg } from './ffmpeg-run';
import type { JobSpecOf } from './job-spec';
import { inputArgs } from './inspect';
import { outputFile, OUT_DIR } from './outputs';
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
/** Each image format is written back as itself. */
const IMAGE_OUTPUTS = {
  jpeg_pipe: { name: 'image.jpg', args: ['-c:v', 'mjpeg', '-q:v', '2'], encoder: 'mjpeg' },
  png_pipe: { name: 'image.png', args: ['-c:v', 'png'], encoder: 'png' },
  webp_pipe: {
    name: 'image.webp',
    args: ['-c:v', 'libwebp', '-quality', String(IMAGE_QUALITY)],
    encoder: 'libwebp',
  },
} as const;
/**
 * EXIF orientation (2–8) as ffmpeg filters: ffmpeg's image decoders ignore it, so the picture
 * is turned upright before it is scaled (its upright size is what the target was computed on).
 */
const ORIENTATION_FILTERS: Record<number, string> = {
  2: 'hflip,',
  3: 'hflip,vflip,',
  4: 'vflip,',
  5: 'transpose=0,',
  6: 'transpose=1,',
  7: 'transpose=3,',
  8: 'transpose=2,',
};

/**
 * A picture made larger by ffmpeg's Lanczos scaler: an image in its own format (upright), a video
 * into H.264 (crf 18) with its sound as AAC. For images ffmpeg was measured against sharp's
 * lanczos3 (bench:jobs, docs/media-jobs.md): sharp was a little faster but scored a lower SSIM
 * against the original, so quality was not equal and ffmpeg's is used. The target keeps the
 * source's aspect ratio and is never smaller than the source.
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
    if (out.encoder === 'libwebp') {
      await requireEncoder(ctx, out.encoder, 'WebP output');
    }
    meter.stage(0, WORK_PERCENT, 0);
    await runFfmpeg(ctx, {
      args: [
        ...inputArgs(input.name, input.demuxer),
        '-vf',
        `${ORIENTATION_FILTERS[input.orientation ?? 1] ?? ''}scale=${target.width}:${target.height}:flags=lanczos`,
        ...out.args,
        '-frames:v',
        '1',
        '-f',
        'image2',
        `./${OUT_DIR}/${out.name}`,
      ],
      label: 'upscale',
      meter,
    });
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
