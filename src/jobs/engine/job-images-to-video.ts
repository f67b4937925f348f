import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { BadInputError } from './errors';
import { runFfmpeg } from './ffmpeg-run';
import { cpuClassOf, inputArgs, throwIfAborted, type ImageFacts } from './inspect';
import type { JobSpecOf } from './job-spec';
import { MAX_INPUT_PIXELS } from './limits';
import { outputFile, OUT_DIR } from './outputs';
import { runSharp } from './sharp-worker';
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

/** The engine's scratch folder: no input name can start with a dot (relName), so none is here. */
export const WORK_DIR = '.engine';
/** Output frame rate when images come with display times and no `fps`. */
export const DURATIONS_DEFAULT_FPS = 30;
/** JPEG quality of images converted before encoding (PNG, WebP, rotated or CMYK JPEGs). */
const CONVERTED_QUALITY = 95;
/** Share of the work that converting images is counted as, when there are any to convert. */
const CONVERT_PERCENT = 10;

/**
 * Pictures into an H.264 MP4. The images reach ffmpeg on its stdin as one MJPEG stream
 * (image2pipe): no file name of the job reaches a demuxer, and no pattern is expanded. Plain
 * JPEGs go as they are; others (PNG, WebP, EXIF-rotated, CMYK, with alpha) are first made into
 * upright sRGB JPEGs by sharp. Images of other sizes are fitted into the output size on black.
 *
 * The output has a constant frame rate: without durations each image is one frame at `fps`;
 * with `durationsMs` each image covers the frames from round(start·fps) to round(end·fps), so
 * display times are kept to half a frame and errors never add up (an image shorter than a frame
 * may fall between two and not be shown).
 */
export const runImagesToVideo: JobRunner<JobSpecOf<'images-to-video'>> = async ({
  job,
  facts,
  ctx,
  meter,
}) => {
  const durations = job.images.durationsMs;
  if (!durations && job.fps === undefined) {
    throw new BadInputError('images-to-video needs fps, or durationsMs for the images');
  }
  const fps = job.fps ?? DURATIONS_DEFAULT_FPS;
  const counts = frameCounts(facts.images.length, fps, durations);
  const frames = counts.reduce((a, b) => a + b, 0);
  if (frames === 0) {
    throw new BadInputError('the images are too short to fill a single frame at this fps');
  }
  const first = facts.images[0];
  const size =
    job.width !== undefined && job.height !== undefined
      ? { width: job.width, height: job.height }
      : capSize(first.width, first.height);

  const converted = facts.images.filter((image) => !image.passThrough);
  const sources = await convertImages(facts.images, converted, ctx);
  const durationS = frames / fps;
  meter.stage(converted.length > 0 ? CONVERT_PERCENT : 0, WORK_PERCENT, durationS);

  const audio = job.audio ? facts.media.get(job.audio.file) : undefined;
  const args = [
    '-protocol_whitelist',
    'pipe',
    '-f',
    'image2pipe',
    '-c:v',
    'mjpeg',
    '-framerate',
    String(fps),
    '-i',
    'pipe:0',
    ...(audio ? inputArgs(audio.name, audio.demuxer) : []),
    '-map',
    '0:v:0',
    ...(audio?.audio ? ['-map', `1:${audio.audio.index}`, ...AAC_ARGS] : []),
    '-vf',
    // Fitting costs a scaler pass per frame: only when some image is not already the output size.
    facts.images.every((image) => image.width === size.width && image.height === size.height)
      ? 'format=yuv420p'
      : `${fitFilter(size.width, size.height)},format=yuv420p`,
    ...x264Args(DEFAULT_CRF),
    // The output ends with the pictures: longer sound is cut, shorter sound stays shorter.
    '-t',
    seconds(durationS),
    ...MP4_ARGS,
    `./${OUT_DIR}/video.mp4`,
  ];
  await runFfmpeg(ctx, {
    args,
    label: 'images-to-video',
    meter,
    feed: (stdin) => feedImages(stdin, sources, counts, ctx.dir, ctx.signal),
  });
  return [outputFile('video.mp4', true)];
};

/**
 * Frames each image covers: 1 each without durations; else the frames whose start falls in
 * [start, end) of the image, on the output's frame grid.
 */
export function frameCounts(images: number, fps: number, durationsMs?: number[]): number[] {
  if (!durationsMs) {
    return new Array<number>(images).fill(1);
  }
  const counts: number[] = [];
  let startMs = 0;
  for (const d of durationsMs) {
    const endMs = startMs + d;
    counts.push(Math.round((endMs * fps) / 1000) - Math.round((startMs * fps) / 1000));
    startMs = endMs;
  }
  return counts;
}

/** Paths (relative to the job's folder) of the JPEGs to send, converting those that need it. */
async function convertImages(
  images: ImageFacts[],
  converted: ImageFacts[],
  ctx: Parameters<JobRunner<unknown>>[0]['ctx'],
): Promise<string[]> {
  const targets = new Map<string, string>();
  converted.forEach((image, i) => {
    targets.set(image.name, `${WORK_DIR}/img-${String(i + 1).padStart(6, '0')}.jpg`);
  });
  if (converted.length > 0) {
    await mkdir(join(ctx.dir, WORK_DIR), { recursive: true });
    await runSharp(
      {
        op: 'jpeg',
        items: converted.map((image) => ({
          from: `./${image.name}`,
          to: `./${targets.get(image.name)}`,
        })),
        quality: CONVERTED_QUALITY,
        maxPixels: MAX_INPUT_PIXELS,
      },
      { cwd: ctx.dir, signal: ctx.signal, cpuClass: cpuClassOf(ctx) },
    );
  }
  return images.map((image) => targets.get(image.name) ?? image.name);
}

/**
 * Writes each image's bytes `counts[i]` times, waiting for ffmpeg to drain: one image in memory
 * at a time, plus the next one being read.
 */
async function feedImages(
  stdin: Writable,
  sources: string[],
  counts: number[],
  dir: string,
  signal: AbortSignal,
): Promise<void> {
  const read = (i: number): Promise<Buffer> | null => {
    if (i >= sources.length) {
      return null;
    }
    const reading = readFile(join(dir, sources[i]));
    // Awaited below, unless ffmpeg went away first.
    reading.catch(() => undefined);
    return reading;
  };
  let index = nextShown(counts, 0);
  let pending = read(index);
  while (pending) {
    const jpeg = await pending;
    const after = nextShown(counts, index + 1);
    pending = read(after);
    for (let n = 0; n < counts[index]; n++) {
      throwIfAborted(signal);
      if (stdin.destroyed) {
        // ffmpeg is gone; its exit status tells why.
        return;
      }
      if (!stdin.write(jpeg)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            stdin.off('drain', done);
            stdin.off('close', done);
            resolve();
          };
          stdin.on('drain', done);
          stdin.on('close', done);
        });
      }
    }
    index = after;
  }
}

function nextShown(counts: number[], from: number): number {
  let i = from;
  while (i < counts.length && counts[i] === 0) {
    i++;
  }
  return i;
}
