import { execFile } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { locateTool } from '../../src/media/ffmpeg-locator';
import { testDir } from './dirs';

const run = promisify(execFile);

/** The ffmpeg/ffprobe the tests use: FFMPEG_PATH / FFPROBE_PATH, else as the service finds them. */
export const TOOLS = {
  ffmpeg: locateTool('ffmpeg', process.env.FFMPEG_PATH).path,
  ffprobe: locateTool('ffprobe', process.env.FFPROBE_PATH).path,
};

/** A job folder with its `in/` folder; `remove()` deletes it. */
export function jobDir(prefix: string): { dir: string; remove(): void } {
  const dir = testDir(`job-${prefix}`);
  mkdirSync(join(dir, 'in'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs the test ffmpeg with a lavfi source (testsrc, sine) or files made before. */
export async function ffmpeg(cwd: string, args: string[]): Promise<void> {
  await run(TOOLS.ffmpeg, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', ...args], {
    cwd,
    maxBuffer: 16 * 1024 * 1024,
  });
}

export interface VideoOptions {
  width?: number;
  height?: number;
  fps?: number;
  seconds: number;
  /** A sine tone of this many seconds (default: as long as the video); 0 for no audio. */
  audioSeconds?: number;
  /** Container arguments after the encoders, e.g. ['-movflags', '+faststart']. */
  extra?: string[];
  /** libx264 (default), or e.g. 'libvpx' for a WebM. */
  videoCodec?: string;
  audioCodec?: string;
}

/** Writes a test video (testsrc pattern, sine tone) to `dir/name`. */
export async function makeVideo(dir: string, name: string, o: VideoOptions): Promise<string> {
  mkdirSync(dirname(join(dir, name)), { recursive: true });
  const size = `${o.width ?? 320}x${o.height ?? 240}`;
  const audioSeconds = o.audioSeconds ?? o.seconds;
  await ffmpeg(dir, [
    '-f',
    'lavfi',
    '-i',
    `testsrc=size=${size}:rate=${o.fps ?? 25}:duration=${o.seconds}`,
    ...(audioSeconds > 0
      ? ['-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=44100:duration=${audioSeconds}`]
      : []),
    '-c:v',
    o.videoCodec ?? 'libx264',
    '-pix_fmt',
    'yuv420p',
    ...(audioSeconds > 0 ? ['-c:a', o.audioCodec ?? 'aac'] : []),
    ...(o.extra ?? []),
    name,
  ]);
  return name;
}

/** Writes a still image of the testsrc pattern (format from the extension). */
export async function makeImage(
  dir: string,
  name: string,
  width: number,
  height: number,
): Promise<string> {
  mkdirSync(dirname(join(dir, name)), { recursive: true });
  await ffmpeg(dir, [
    '-f',
    'lavfi',
    '-i',
    `testsrc=size=${width}x${height}:rate=1`,
    '-frames:v',
    '1',
    name,
  ]);
  return name;
}

export interface ProbedStream {
  codec_type: string;
  codec_name: string;
  width?: number;
  height?: number;
  pix_fmt?: string;
  nb_read_frames?: string;
  duration?: string;
  sample_rate?: string;
  channels?: number;
}

/** ffprobe of a file with every frame counted (`-count_frames`): what the file really holds. */
export async function probeFile(
  path: string,
): Promise<{ format: { format_name: string; duration?: string }; streams: ProbedStream[] }> {
  const { stdout } = await run(
    TOOLS.ffprobe,
    ['-v', 'error', '-count_frames', '-show_format', '-show_streams', '-of', 'json', path],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  return JSON.parse(stdout) as {
    format: { format_name: string; duration?: string };
    streams: ProbedStream[];
  };
}

export function streamOf(
  probe: { streams: ProbedStream[] },
  type: 'video' | 'audio',
): ProbedStream | undefined {
  return probe.streams.find((s) => s.codec_type === type);
}
