import { requireEncoder, runFfmpeg } from './ffmpeg-run';
import type { JobSpecOf } from './job-spec';
import { inputArgs } from './inspect';
import { outputFile, OUT_DIR } from './outputs';
import {
  AAC_ARGS,
  capSize,
  checkCap,
  DEFAULT_CRF,
  even,
  fitFilter,
  type JobRunner,
  MP4_ARGS,
  WORK_PERCENT,
  X264_PRESET,
} from './video-args';

/**
 * A video re-encoded to H.264 or H.265 (MP4), at a constant quality (crf, default 23) or a bit
 * rate, optionally resized; its first audio stream kept as AAC. H.265 needs libx265 (detected
 * from `ffmpeg -encoders`) and is tagged `hvc1`, which Apple players require.
 */
export const runTranscode: JobRunner<JobSpecOf<'transcode'>> = async ({
  job,
  facts,
  ctx,
  meter,
}) => {
  const input = facts.media.get(job.input.file);
  if (!input?.video) {
    throw new Error('transcode: inputs were not inspected');
  }
  const encoder = job.codec === 'h265' ? 'libx265' : 'libx264';
  if (job.codec === 'h265') {
    await requireEncoder(ctx, encoder, 'H.265 output');
  }
  const src = input.video;
  let filter: string;
  if (job.width !== undefined && job.height !== undefined) {
    filter = fitFilter(job.width, job.height);
  } else {
    const size =
      job.width !== undefined
        ? { width: job.width, height: even((job.width * src.height) / src.width) }
        : job.height !== undefined
          ? { width: even((job.height * src.width) / src.height), height: job.height }
          : capSize(src.width, src.height);
    checkCap(size, 'the output');
    filter = `scale=${size.width}:${size.height}:flags=bicubic,setsar=1`;
  }
  const rate =
    job.bitrateKbps !== undefined
      ? [
          '-b:v',
          `${job.bitrateKbps}k`,
          '-maxrate',
          `${job.bitrateKbps * 2}k`,
          '-bufsize',
          `${job.bitrateKbps * 2}k`,
        ]
      : ['-crf', String(job.crf ?? DEFAULT_CRF)];
  meter.stage(0, WORK_PERCENT, input.durationS);
  await runFfmpeg(ctx, {
    args: [
      ...inputArgs(input.name, input.demuxer),
      '-map',
      `0:${src.index}`,
      ...(input.audio ? ['-map', `0:${input.audio.index}`, ...AAC_ARGS] : []),
      '-vf',
      `${filter},format=yuv420p`,
      '-c:v',
      encoder,
      '-preset',
      X264_PRESET,
      ...rate,
      ...(job.codec === 'h265' ? ['-tag:v', 'hvc1', '-x265-params', 'log-level=error'] : []),
      '-map_metadata',
      '-1',
      ...MP4_ARGS,
      `./${OUT_DIR}/video.mp4`,
    ],
    label: 'transcode',
    meter,
  });
  return [outputFile('video.mp4', true)];
};
