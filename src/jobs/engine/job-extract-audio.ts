import { requireEncoder, runFfmpeg } from './ffmpeg-run';
import type { JobSpecOf } from './job-spec';
import { outputFile, OUT_DIR } from './outputs';
import { inputArgs } from './inspect';
import { type JobRunner, WORK_PERCENT } from './video-args';

/** Encoder arguments, muxer and default bit rate of each format. */
const FORMATS = {
  wav: { encoder: 'pcm_s16le', muxer: 'wav', defaultKbps: null },
  aac: { encoder: 'aac', muxer: 'adts', defaultKbps: 128 },
  mp3: { encoder: 'libmp3lame', muxer: 'mp3', defaultKbps: 192 },
} as const;

/**
 * The first audio stream of a file as WAV (PCM 16-bit), AAC (ADTS) or MP3. MP3 needs the
 * libmp3lame encoder (both supported ffmpeg builds have it; a build without it refuses the job).
 */
export const runExtractAudio: JobRunner<JobSpecOf<'extract-audio'>> = async ({
  job,
  facts,
  ctx,
  meter,
}) => {
  const input = facts.media.get(job.input.file);
  if (!input?.audio) {
    throw new Error('extract-audio: inputs were not inspected');
  }
  const format = FORMATS[job.format];
  if (job.format === 'mp3') {
    await requireEncoder(ctx, format.encoder, 'MP3 output');
  }
  const kbps = job.bitrateKbps ?? format.defaultKbps;
  const name = `audio.${job.format}`;
  meter.stage(0, WORK_PERCENT, input.durationS);
  await runFfmpeg(ctx, {
    args: [
      ...inputArgs(input.name, input.demuxer),
      '-map',
      `0:${input.audio.index}`,
      '-c:a',
      format.encoder,
      ...(kbps === null ? [] : ['-b:a', `${kbps}k`]),
      // Tags of the source (titles, encoder names) are not carried into the result.
      '-map_metadata',
      '-1',
      '-f',
      format.muxer,
      `./${OUT_DIR}/${name}`,
    ],
    label: 'extract-audio',
    meter,
  });
  return [outputFile(name, true)];
};
