import { access, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BadInputError } from './errors';
import { runFfmpeg } from './ffmpeg-run';
import type { JobSpecOf } from './job-spec';
import { inputArgs, type MediaFacts } from './inspect';
import { MAX_SPRITE_SIDE, MAX_THUMBNAILS } from './limits';
import { outputFile, OUT_DIR, type OutputFile } from './outputs';
import { even, type JobRunner, seconds, WORK_PERCENT } from './video-args';

/** Width of a thumbnail when none is given. */
export const DEFAULT_THUMBNAIL_WIDTH = 320;
/** ffmpeg's JPEG quality scale (2 best .. 31 worst). */
const JPEG_QSCALE = '3';

/**
 * Frames of a video as JPEGs: one every `everySeconds` (at 0, e, 2e, …), or one at each of
 * `atSeconds` (each its own seek), named `thumb-0001.jpg` on; or, with `sprite`, every frame of
 * the `everySeconds` grid tiled into `sprite.jpg` with `index.vtt`, a WebVTT file whose cues map
 * each time range to its tile (`sprite.jpg#xywh=x,y,w,h`, the usual player convention).
 */
export const runThumbnails: JobRunner<JobSpecOf<'thumbnails'>> = async (run) => {
  const { job, facts } = run;
  const input = facts.media.get(job.input.file);
  if (!input?.video) {
    throw new Error('thumbnails: inputs were not inspected');
  }
  if (job.sprite && job.everySeconds !== undefined) {
    return sprite(run, input, job.everySeconds, job.sprite);
  }
  if (job.everySeconds !== undefined) {
    return every(run, input, job.everySeconds);
  }
  return at(run, input, job.atSeconds ?? []);
};

type Run = Parameters<JobRunner<JobSpecOf<'thumbnails'>>>[0];

function frameCount(input: MediaFacts, everySeconds: number): number {
  const count = Math.ceil(input.durationS / everySeconds - 1e-9);
  if (count > MAX_THUMBNAILS) {
    throw new BadInputError(
      `a frame every ${everySeconds} s of ${Math.round(input.durationS)} s is ${count} frames, more than the ${MAX_THUMBNAILS} allowed`,
    );
  }
  return Math.max(1, count);
}

function thumbName(i: number): string {
  return `thumb-${String(i).padStart(4, '0')}.jpg`;
}

async function every(run: Run, input: MediaFacts, everySeconds: number): Promise<OutputFile[]> {
  const { job, ctx, meter } = run;
  const video = input.video as NonNullable<MediaFacts['video']>;
  frameCount(input, everySeconds);
  const width = job.width ?? DEFAULT_THUMBNAIL_WIDTH;
  meter.stage(0, WORK_PERCENT, input.durationS);
  await runFfmpeg(ctx, {
    args: [
      ...inputArgs(input.name, input.demuxer),
      '-map',
      `0:${video.index}`,
      '-vf',
      `fps=1/${everySeconds},scale=${width}:-2:flags=bicubic`,
      '-q:v',
      JPEG_QSCALE,
      // Our own pattern, on our own output folder: the only place a %d reaches ffmpeg.
      '-f',
      'image2',
      `./${OUT_DIR}/thumb-%04d.jpg`,
    ],
    label: 'thumbnails',
    meter,
  });
  const names = (await readdir(join(ctx.dir, OUT_DIR)))
    .filter((name) => /^thumb-\d{4}\.jpg$/.test(name))
    .sort();
  if (names.length === 0) {
    throw new BadInputError(`thumbnails: no frame could be decoded from input "${input.name}"`);
  }
  return names.map((name, i) => outputFile(name, i === 0));
}

async function at(run: Run, input: MediaFacts, times: number[]): Promise<OutputFile[]> {
  const { job, ctx, meter } = run;
  const video = input.video as NonNullable<MediaFacts['video']>;
  const width = job.width ?? DEFAULT_THUMBNAIL_WIDTH;
  for (const t of times) {
    if (t >= input.durationS) {
      throw new BadInputError(
        `thumbnails: ${t} s is not before the end of input "${input.name}" (${input.durationS.toFixed(3)} s)`,
      );
    }
  }
  const outputs: OutputFile[] = [];
  for (const [i, t] of times.entries()) {
    const name = thumbName(i + 1);
    meter.stage((WORK_PERCENT * i) / times.length, (WORK_PERCENT * (i + 1)) / times.length, 1 / 25);
    // -ss before the input seeks to the keyframe before t, then decodes up to t: exact and cheap.
    await runFfmpeg(ctx, {
      args: [
        '-ss',
        seconds(t),
        ...inputArgs(input.name, input.demuxer),
        '-map',
        `0:${video.index}`,
        '-frames:v',
        '1',
        '-vf',
        `scale=${width}:-2:flags=bicubic`,
        '-q:v',
        JPEG_QSCALE,
        '-f',
        'image2',
        `./${OUT_DIR}/${name}`,
      ],
      label: 'thumbnails',
      meter,
    });
    try {
      await access(join(ctx.dir, OUT_DIR, name));
    } catch {
      throw new BadInputError(`thumbnails: input "${input.name}" has no frame at ${t} s`);
    }
    outputs.push(outputFile(name, i === 0));
  }
  return outputs;
}

async function sprite(
  run: Run,
  input: MediaFacts,
  everySeconds: number,
  layout: { columns: number; width: number },
): Promise<OutputFile[]> {
  const { ctx, meter } = run;
  const video = input.video as NonNullable<MediaFacts['video']>;
  const count = frameCount(input, everySeconds);
  const columns = Math.min(layout.columns, count);
  const rows = Math.ceil(count / columns);
  const tileW = layout.width;
  const tileH = even((tileW * video.height) / video.width);
  if (columns * tileW > MAX_SPRITE_SIDE || rows * tileH > MAX_SPRITE_SIDE) {
    throw new BadInputError(
      `the sprite sheet would be ${columns * tileW}×${rows * tileH}, beyond ${MAX_SPRITE_SIDE} pixels a side; use fewer, smaller tiles or a longer interval`,
    );
  }
  meter.stage(0, WORK_PERCENT, input.durationS);
  await runFfmpeg(ctx, {
    args: [
      ...inputArgs(input.name, input.demuxer),
      '-map',
      `0:${video.index}`,
      '-vf',
      `fps=1/${everySeconds},scale=${tileW}:${tileH}:flags=bicubic,setsar=1,tile=${columns}x${rows}`,
      '-frames:v',
      '1',
      '-q:v',
      JPEG_QSCALE,
      '-f',
      'image2',
      `./${OUT_DIR}/sprite.jpg`,
    ],
    label: 'thumbnails',
    meter,
  });
  await writeFile(
    join(ctx.dir, OUT_DIR, 'index.vtt'),
    spriteVtt(count, columns, tileW, tileH, everySeconds, input.durationS),
  );
  return [outputFile('sprite.jpg', true), outputFile('index.vtt', false)];
}

/** WebVTT cues, one per tile: its time range and its place in the sheet. */
export function spriteVtt(
  count: number,
  columns: number,
  tileW: number,
  tileH: number,
  everySeconds: number,
  durationS: number,
): string {
  const lines = ['WEBVTT', ''];
  for (let k = 0; k < count; k++) {
    const start = k * everySeconds;
    const end = Math.min((k + 1) * everySeconds, durationS);
    const x = (k % columns) * tileW;
    const y = Math.floor(k / columns) * tileH;
    lines.push(
      `${vttTime(start)} --> ${vttTime(end)}`,
      `sprite.jpg#xywh=${x},${y},${tileW},${tileH}`,
      '',
    );
  }
  return lines.join('\n');
}

function vttTime(s: number): string {
  const ms = Math.round(s * 1000);
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor(ms / 60_000) % 60;
  const sec = Math.floor(ms / 1000) % 60;
  const frac = ms % 1000;
  return `${pad(h, 2)}:${pad(m, 2)}:${pad(sec, 2)}.${pad(frac, 3)}`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}
