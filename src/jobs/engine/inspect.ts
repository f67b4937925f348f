import { type FileHandle, open, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { imageHeader } from '../../media/image-header';
import type { EngineContext } from './engine-context';
import { BadInputError, isTransientErrno, isTransientStderr, JobCancelledError } from './errors';
import type { EngineJob, LocalImages, LocalSingle } from './job-spec';
import { isPlainJpeg } from './jpeg-traits';
import { MAX_DURATION_S, MAX_IMAGE_DURATION_MS, MAX_INPUT_PIXELS, MAX_STREAMS } from './limits';
import { runSharp, type SharpMetadata } from './sharp-worker';
import {
  ALLOWED_DEMUXERS,
  type Demuxer,
  IMAGE_DEMUXERS,
  matroskaStructureProblem,
  movStructureProblem,
  sniffDemuxer,
  SNIFF_BYTES,
} from './sniff';
import { runTool, ToolFailure } from './tool-process';

/** Video codecs accepted inside a container (decoders in both supported ffmpeg builds). */
const VIDEO_CODECS = new Set(['h264', 'hevc', 'mpeg4', 'vp8', 'vp9', 'av1', 'mjpeg']);
/** The codec an image demuxer must find. */
const IMAGE_CODECS: Record<string, string> = {
  jpeg_pipe: 'mjpeg',
  png_pipe: 'png',
  webp_pipe: 'webp',
};
const AUDIO_CODECS = new Set([
  'aac',
  'mp3',
  'opus',
  'vorbis',
  'flac',
  'pcm_s16le',
  'pcm_s16be',
  'pcm_s24le',
  'pcm_s32le',
  'pcm_f32le',
  'pcm_u8',
]);
/** Streams that may sit beside the picture and sound (timecodes, phone metadata, subtitles): ignored. */
const IGNORED_STREAM_TYPES = new Set(['data', 'subtitle']);
const MAX_AUDIO_CHANNELS = 8;
const MAX_SAMPLE_RATE = 192_000;
/** Bytes read first to find an image's size in its header: enough for a camera's JPEG. */
const IMAGE_HEADER_BYTES = 64 * 1024;
/** When that was not enough (EXIF and ICC segments come before a JPEG's size), read this much. */
const IMAGE_HEADER_MAX_BYTES = 1024 * 1024;
/** ffprobe's JSON for one file is a few kB; more is not a file we accept. */
const PROBE_OUTPUT_LIMIT = 1024 * 1024;
/** Image files inspected at once (open, read the header, close). */
const HEADER_READS_IN_FLIGHT = 8;

/** What the probes found about one single input. */
export interface MediaFacts {
  name: string;
  demuxer: Demuxer;
  image: boolean;
  /** Seconds; 0 for an image. */
  durationS: number;
  /** The picture, its size as displayed (rotation applied); null when there is none. */
  video: { index: number; codec: string; width: number; height: number; fps: number } | null;
  audio: { index: number; codec: string; channels: number; sampleRate: number } | null;
  /** An image's EXIF orientation (1 = as stored; ffmpeg ignores it, so jobs apply it). */
  orientation?: number;
}

/** One image of an `images` input. */
export interface ImageFacts {
  name: string;
  /** Upright size (EXIF orientation applied). */
  width: number;
  height: number;
  /** A plain upright sRGB JPEG that ffmpeg may read as it is; anything else is converted first. */
  passThrough: boolean;
}

export interface JobFacts {
  /** Keyed by input name. */
  media: Map<string, MediaFacts>;
  images: ImageFacts[];
}

type Need = 'video' | 'audio' | 'video-or-image';

/**
 * Probes every input of a job before any work starts, and throws BadInputError naming the input
 * and the reason for the first one that is not acceptable: outside the folder or not a regular
 * file, not one of the allowed containers (recognised from its first bytes, then confirmed by
 * ffprobe forced to that demuxer), cut short, too many streams, a codec not allowed, too many
 * pixels, too long, or missing the stream the job needs. docs/media-jobs.md lists the rules.
 */
export async function inspectJob(job: EngineJob, ctx: EngineContext): Promise<JobFacts> {
  const facts: JobFacts = { media: new Map(), images: [] };
  const single = async (input: LocalSingle, need: Need, what: string): Promise<MediaFacts> => {
    const found = facts.media.get(input.file) ?? (await inspectMedia(input.file, ctx));
    facts.media.set(input.file, found);
    requireStreams(found, need, what);
    return found;
  };
  switch (job.type) {
    case 'images-to-video':
      facts.images = await inspectImages(job.images, ctx);
      if (job.audio) {
        await single(job.audio, 'audio', 'audio');
      }
      break;
    case 'extract-audio':
      await single(job.input, 'audio', 'input');
      break;
    case 'transcode':
      await single(job.input, 'video', 'input');
      break;
    case 'upscale':
      await single(job.input, 'video-or-image', 'input');
      break;
    case 'thumbnails':
      await single(job.input, 'video', 'input');
      break;
    case 'concat':
      for (const [i, input] of job.inputs.entries()) {
        await single(input, 'video', `inputs[${i}]`);
      }
      break;
  }
  return facts;
}

function requireStreams(facts: MediaFacts, need: Need, what: string): void {
  const label = `${what} "${facts.name}"`;
  switch (need) {
    case 'audio':
      if (!facts.audio) {
        throw new BadInputError(`${label} has no audio stream`);
      }
      return;
    case 'video':
      if (facts.image) {
        throw new BadInputError(`${label} is a still image; this job needs a video`);
      }
      if (!facts.video) {
        throw new BadInputError(`${label} has no video stream`);
      }
      return;
    case 'video-or-image':
      if (!facts.video) {
        throw new BadInputError(`${label} has no picture (neither a video stream nor an image)`);
      }
      return;
  }
}

/** A file of the job's folder: resolved, inside it, regular. Returns its size. */
async function checkFile(name: string, ctx: EngineContext): Promise<number> {
  const root = await realpath(ctx.dir);
  let real: string;
  try {
    real = await realpath(join(ctx.dir, name));
  } catch (err) {
    throw fileError(name, err);
  }
  if (!real.startsWith(root + sep)) {
    throw new BadInputError(`input "${name}" points outside the job's folder`);
  }
  const fh = await open(real, 'r').catch((err: unknown) => {
    throw fileError(name, err);
  });
  try {
    const stat = await fh.stat();
    if (!stat.isFile()) {
      throw new BadInputError(`input "${name}" is not a regular file`);
    }
    if (stat.size === 0) {
      throw new BadInputError(`input "${name}" is empty`);
    }
    return stat.size;
  } finally {
    await fh.close();
  }
}

function fileError(name: string, err: unknown): Error {
  if (isTransientErrno(err)) {
    return err as Error;
  }
  const code = (err as NodeJS.ErrnoException).code;
  return new BadInputError(
    code === 'ENOENT'
      ? `input "${name}" does not exist`
      : `input "${name}" cannot be read (${code})`,
  );
}

/**
 * Reads the start of a file of the folder (already checked by `checkFile`): IMAGE_HEADER_BYTES,
 * or up to IMAGE_HEADER_MAX_BYTES when the file is longer and no image size was found in that.
 */
async function readHead(name: string, ctx: EngineContext): Promise<Buffer> {
  const fh = await open(join(ctx.dir, name), 'r');
  try {
    return await readStart(fh);
  } finally {
    await fh.close();
  }
}

async function readStart(fh: FileHandle): Promise<Buffer> {
  let buf = Buffer.allocUnsafe(IMAGE_HEADER_BYTES);
  let { bytesRead } = await fh.read(buf, 0, buf.length, 0);
  if (bytesRead === buf.length && !imageHeader(buf)) {
    buf = Buffer.allocUnsafe(IMAGE_HEADER_MAX_BYTES);
    ({ bytesRead } = await fh.read(buf, 0, buf.length, 0));
  }
  return buf.subarray(0, bytesRead);
}

/** An image's declared size, from its header, within the pixel limit: before any decoder sees it. */
function checkImageHeader(name: string, head: Buffer): { width: number; height: number } {
  const header = imageHeader(head);
  if (!header || header.width === 0 || header.height === 0) {
    throw new BadInputError(`input "${name}" is not a readable JPEG, PNG or WebP image`);
  }
  if (header.width * header.height > MAX_INPUT_PIXELS) {
    throw new BadInputError(
      `input "${name}" declares ${header.width}×${header.height} pixels, more than the ${MAX_INPUT_PIXELS} allowed`,
    );
  }
  return header;
}

async function inspectMedia(name: string, ctx: EngineContext): Promise<MediaFacts> {
  throwIfAborted(ctx.signal);
  const size = await checkFile(name, ctx);
  const head = await readHead(name, ctx);
  const demuxer = sniffDemuxer(head.subarray(0, SNIFF_BYTES));
  if (!demuxer) {
    throw new BadInputError(
      `input "${name}" is not an accepted media file (allowed: MP4/MOV, Matroska/WebM, WAV, MP3, AAC, Ogg, JPEG, PNG, WebP)`,
    );
  }
  const image = IMAGE_DEMUXERS.has(demuxer);
  if (image) {
    checkImageHeader(name, head);
  } else {
    const problem = await structureProblem(name, demuxer, ctx, size);
    if (problem) {
      throw new BadInputError(`input "${name}" ${problem}`);
    }
  }
  const probe = await ffprobe(name, demuxer, ctx);
  const facts = factsFromProbe(name, demuxer, probe);
  if (image) {
    const [meta] = await runSharp<SharpMetadata[]>(
      { op: 'metadata', files: [`./${name}`], maxPixels: MAX_INPUT_PIXELS },
      { cwd: ctx.dir, signal: ctx.signal, cpuClass: cpuClassOf(ctx) },
    );
    checkSharpImage(name, meta);
    if (meta && !('error' in meta) && facts.video) {
      facts.orientation = meta.orientation;
      if (meta.orientation >= 5) {
        // EXIF orientations 5–8 turn the picture a quarter: its upright size is the other way.
        facts.video = { ...facts.video, width: facts.video.height, height: facts.video.width };
      }
    }
  }
  return facts;
}

async function structureProblem(
  name: string,
  demuxer: Demuxer,
  ctx: EngineContext,
  size: number,
): Promise<string | null> {
  if (demuxer !== 'mov' && demuxer !== 'matroska') {
    return null;
  }
  const fh = await open(join(ctx.dir, name), 'r');
  try {
    return demuxer === 'mov'
      ? await movStructureProblem(fh, size)
      : await matroskaStructureProblem(fh, size);
  } finally {
    await fh.close();
  }
}

/**
 * The input arguments every ffprobe and ffmpeg run gets for a file: only the file and pipe
 * protocols, the demuxer chosen from the file's bytes, and for MP4/MOV no external data
 * references (already off by default: said explicitly, so no build's default can change it).
 */
export function inputArgs(name: string, demuxer: Demuxer): string[] {
  return [
    '-protocol_whitelist',
    'file,pipe',
    '-f',
    demuxer,
    ...(demuxer === 'mov' ? ['-enable_drefs', '0'] : []),
    '-i',
    `./${name}`,
  ];
}

interface ProbeStream {
  index: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  channels?: number;
  sample_rate?: string;
  r_frame_rate?: string;
  avg_frame_rate?: string;
  disposition?: { attached_pic?: number };
  tags?: { rotate?: string };
  side_data_list?: Array<{ rotation?: number }>;
}
interface Probe {
  format?: { format_name?: string; duration?: string; nb_streams?: number };
  streams?: ProbeStream[];
}

async function ffprobe(name: string, demuxer: Demuxer, ctx: EngineContext): Promise<Probe> {
  const args = ['-v', 'error', ...inputArgs(name, demuxer)];
  // ffprobe takes its input without -i.
  args.splice(args.indexOf('-i'), 1);
  let stdout: string;
  try {
    stdout = await runTool({
      command: ctx.tools.ffprobe,
      args: [...args, '-show_format', '-show_streams', '-of', 'json'],
      cwd: ctx.dir,
      signal: ctx.signal,
      cpuClass: cpuClassOf(ctx),
      label: 'ffprobe',
      stdoutLimit: PROBE_OUTPUT_LIMIT,
    });
  } catch (err) {
    if (err instanceof ToolFailure && !err.exitSignal && !isTransientStderr(err.stderrTail)) {
      throw new BadInputError(
        `input "${name}" could not be read as ${describeDemuxer(demuxer)}${err.stderrTail ? ` (${err.stderrTail})` : ''}`,
      );
    }
    throw err;
  }
  try {
    return JSON.parse(stdout) as Probe;
  } catch {
    throw new BadInputError(`input "${name}" could not be probed`);
  }
}

function describeDemuxer(demuxer: Demuxer): string {
  return demuxer.replace('_pipe', '').toUpperCase();
}

function factsFromProbe(name: string, demuxer: Demuxer, probe: Probe): MediaFacts {
  const label = `input "${name}"`;
  const formatName = probe.format?.format_name;
  if (formatName !== ALLOWED_DEMUXERS[demuxer]) {
    throw new BadInputError(`${label} has container format "${formatName}", which is not accepted`);
  }
  const streams = probe.streams ?? [];
  if (streams.length === 0) {
    throw new BadInputError(`${label} has no streams`);
  }
  if (streams.length > MAX_STREAMS) {
    throw new BadInputError(`${label} has ${streams.length} streams (at most ${MAX_STREAMS})`);
  }
  const image = IMAGE_DEMUXERS.has(demuxer);
  let video: MediaFacts['video'] = null;
  let audio: MediaFacts['audio'] = null;
  for (const s of streams) {
    const type = s.codec_type ?? 'unknown';
    const codec = s.codec_name ?? 'unknown';
    if (type === 'video') {
      const allowed = image ? codec === IMAGE_CODECS[demuxer] : VIDEO_CODECS.has(codec);
      if (!allowed) {
        throw new BadInputError(`${label} has video codec "${codec}", which is not accepted`);
      }
      const width = s.width ?? 0;
      const height = s.height ?? 0;
      if (width <= 0 || height <= 0) {
        throw new BadInputError(`${label} has a video stream without a picture size`);
      }
      if (width * height > MAX_INPUT_PIXELS) {
        throw new BadInputError(
          `${label} has ${width}×${height} pixels, more than the ${MAX_INPUT_PIXELS} allowed`,
        );
      }
      // Cover art of an audio file is a picture, not a video.
      if (!video && !s.disposition?.attached_pic) {
        const quarter = Math.abs(rotationOf(s)) % 180 === 90;
        video = {
          index: s.index,
          codec,
          width: quarter ? height : width,
          height: quarter ? width : height,
          fps: rate(s.avg_frame_rate) || rate(s.r_frame_rate),
        };
      }
    } else if (type === 'audio') {
      if (!AUDIO_CODECS.has(codec)) {
        throw new BadInputError(`${label} has audio codec "${codec}", which is not accepted`);
      }
      const channels = s.channels ?? 0;
      const sampleRate = Number(s.sample_rate ?? 0);
      if (channels < 1 || channels > MAX_AUDIO_CHANNELS) {
        throw new BadInputError(
          `${label} has ${channels} audio channels (1 to ${MAX_AUDIO_CHANNELS})`,
        );
      }
      if (!(sampleRate > 0 && sampleRate <= MAX_SAMPLE_RATE)) {
        throw new BadInputError(`${label} has an audio sample rate of ${sampleRate} Hz`);
      }
      audio ??= { index: s.index, codec, channels, sampleRate };
    } else if (!IGNORED_STREAM_TYPES.has(type)) {
      throw new BadInputError(`${label} has a stream of type "${type}", which is not accepted`);
    }
  }
  let durationS = 0;
  if (!image) {
    durationS = Number(probe.format?.duration);
    if (!Number.isFinite(durationS) || durationS <= 0) {
      throw new BadInputError(`${label} does not say how long it is`);
    }
    if (durationS > MAX_DURATION_S) {
      throw new BadInputError(
        `${label} lasts ${Math.round(durationS)} s, more than the ${MAX_DURATION_S} s allowed`,
      );
    }
  }
  return { name, demuxer, image, durationS, video, audio };
}

/** Display rotation in degrees: side data (newer ffprobe) or the `rotate` tag (older). */
function rotationOf(s: ProbeStream): number {
  const side = s.side_data_list?.find((d) => typeof d.rotation === 'number')?.rotation;
  return side ?? Number(s.tags?.rotate ?? 0);
}

function rate(text: string | undefined): number {
  const [num, den] = (text ?? '0/0').split('/').map(Number);
  return num > 0 && den > 0 ? num / den : 0;
}

function checkSharpImage(name: string, meta: SharpMetadata | undefined): void {
  if (!meta || 'error' in meta) {
    throw new BadInputError(
      `input "${name}" is not a decodable image${meta ? ` (${meta.error})` : ''}`,
    );
  }
  if (meta.pages > 1) {
    throw new BadInputError(`input "${name}" is an animated image, which is not accepted`);
  }
}

/**
 * The images of an `images` input: each a regular file of the folder, a JPEG, PNG or WebP whose
 * header declares at most MAX_INPUT_PIXELS. A plain JPEG (`isPlainJpeg`) goes to ffmpeg as it is:
 * its decoder allocates what the header, checked here, declares. Every other image is opened by
 * sharp with `limitInputPixels` (one child process for them all) and converted before encoding.
 * Images are not given to ffprobe one by one (a session's 18 000 frames would take minutes of
 * process starts): they reach ffmpeg through its stdin, decoded as JPEG.
 */
async function inspectImages(images: LocalImages, ctx: EngineContext): Promise<ImageFacts[]> {
  const total = (images.durationsMs ?? []).reduce((a, b) => a + b, 0);
  if (total / 1000 > MAX_DURATION_S) {
    throw new BadInputError(
      `images last ${Math.round(total / 1000)} s in all, more than the ${MAX_DURATION_S} s allowed`,
    );
  }
  for (const d of images.durationsMs ?? []) {
    if (d > MAX_IMAGE_DURATION_MS) {
      throw new BadInputError(`an image may be shown for at most ${MAX_IMAGE_DURATION_MS} ms`);
    }
  }
  const root = await realpath(ctx.dir);
  const files = images.files;
  const facts: ImageFacts[] = new Array<ImageFacts>(files.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      const name = files[i];
      throwIfAborted(ctx.signal);
      const head = await readImageStart(name, root, ctx);
      const demuxer = sniffDemuxer(head.subarray(0, SNIFF_BYTES));
      if (!demuxer || !IMAGE_DEMUXERS.has(demuxer)) {
        throw new BadInputError(`image "${name}" is not a JPEG, PNG or WebP image`);
      }
      const size = checkImageHeader(name, head);
      facts[i] = { name, width: size.width, height: size.height, passThrough: isPlainJpeg(head) };
    }
  };
  await Promise.all(Array.from({ length: HEADER_READS_IN_FLIGHT }, worker));
  const others = facts.filter((image) => !image.passThrough);
  if (others.length > 0) {
    const metas = await runSharp<SharpMetadata[]>(
      { op: 'metadata', files: others.map((f) => `./${f.name}`), maxPixels: MAX_INPUT_PIXELS },
      { cwd: ctx.dir, signal: ctx.signal, cpuClass: cpuClassOf(ctx) },
    );
    others.forEach((image, i) => {
      const meta = metas[i];
      checkSharpImage(image.name, meta);
      if (!('error' in meta) && meta.orientation >= 5) {
        // EXIF orientations 5–8 turn the picture a quarter: sharp's conversion makes it upright.
        image.width = meta.height;
        image.height = meta.width;
      }
    });
  }
  return facts;
}

/**
 * One image file of the folder in one open: inside the folder (symlinks resolved), regular, not
 * empty; returns its first bytes (see `readHead`).
 */
async function readImageStart(name: string, root: string, ctx: EngineContext): Promise<Buffer> {
  let real: string;
  try {
    real = await realpath(join(ctx.dir, name));
  } catch (err) {
    throw fileError(name, err);
  }
  if (!real.startsWith(root + sep)) {
    throw new BadInputError(`input "${name}" points outside the job's folder`);
  }
  const fh = await open(real, 'r').catch((err: unknown) => {
    throw fileError(name, err);
  });
  try {
    const stat = await fh.stat();
    if (!stat.isFile() || stat.size === 0) {
      throw new BadInputError(
        `image "${name}" is ${stat.isFile() ? 'empty' : 'not a regular file'}`,
      );
    }
    return await readStart(fh);
  } finally {
    await fh.close();
  }
}

export function cpuClassOf(ctx: EngineContext): NonNullable<EngineContext['cpuClass']> {
  return ctx.cpuClass ?? 'background';
}

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) {
    throw new JobCancelledError();
  }
}
