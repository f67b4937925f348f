import { runFfmpeg } from './ffmpeg-run';
import type { JobSpecOf } from './job-spec';
import { inputArgs, type MediaFacts } from './inspect';
import { MAX_FPS } from './limits';
import { outputFile, OUT_DIR } from './outputs';
import {
  AAC_ARGS,
  capSize,
  DEFAULT_CRF,
  fitFilter,
  type JobRunner,
  MP4_ARGS,
  seconds,
  WORK_PERCENT,
  x264Args,
} from './video-args';

/** Sound of the joined video: every segment is brought to this before the concat filter. */
const AUDIO_RATE = 48_000;
const AUDIO_LAYOUT = 'stereo';
/** Frame rate when the first input does not say one. */
const FALLBACK_FPS = 25;

/**
 * Recordings joined in order into one H.264/AAC MP4, re-encoded through the concat *filter*
 * (the concat demuxer would read a list file naming other files): each input scaled and padded to
 * the first one's picture size and brought to its frame rate, each sound resampled to 48 kHz
 * stereo. When some inputs have sound and others not, the silent ones get silence of their
 * length, so picture and sound stay together; with no sound anywhere the output has none.
 */
export const runConcat: JobRunner<JobSpecOf<'concat'>> = async ({ job, facts, ctx, meter }) => {
  const inputs = job.inputs.map((input) => {
    const found = facts.media.get(input.file);
    if (!found?.video) {
      throw new Error('concat: inputs were not inspected');
    }
    return found as MediaFacts & { video: NonNullable<MediaFacts['video']> };
  });
  const first = inputs[0].video;
  const size = capSize(first.width, first.height);
  const fps = Math.min(MAX_FPS, Math.round(first.fps) || FALLBACK_FPS);
  const withAudio = inputs.some((input) => input.audio);
  const chains: string[] = [];
  const segments: string[] = [];
  inputs.forEach((input, i) => {
    chains.push(
      `[${i}:${input.video.index}]${fitFilter(size.width, size.height)},fps=${fps},format=yuv420p[v${i}]`,
    );
    segments.push(`[v${i}]`);
    if (withAudio) {
      chains.push(
        input.audio
          ? `[${i}:${input.audio.index}]aresample=${AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=${AUDIO_LAYOUT}[a${i}]`
          : `anullsrc=r=${AUDIO_RATE}:cl=${AUDIO_LAYOUT},atrim=duration=${seconds(input.durationS)}[a${i}]`,
      );
      segments.push(`[a${i}]`);
    }
  });
  const graph =
    `${chains.join(';')};${segments.join('')}` +
    `concat=n=${inputs.length}:v=1:a=${withAudio ? 1 : 0}[v]${withAudio ? '[a]' : ''}`;
  meter.stage(
    0,
    WORK_PERCENT,
    inputs.reduce((sum, input) => sum + input.durationS, 0),
  );
  await runFfmpeg(ctx, {
    args: [
      ...inputs.flatMap((input) => inputArgs(input.name, input.demuxer)),
      '-filter_complex',
      graph,
      '-map',
      '[v]',
      ...(withAudio ? ['-map', '[a]', ...AAC_ARGS] : []),
      ...x264Args(DEFAULT_CRF),
      '-map_metadata',
      '-1',
      ...MP4_ARGS,
      `./${OUT_DIR}/video.mp4`,
    ],
    label: 'concat',
    meter,
  });
  return [outputFile('video.mp4', true)];
};
