/**
 * What a recording looks like next to the camera's frames: SSIM by ffmpeg's `ssim` filter, and the
 * recording framegate makes of a JPEG session (its own x264 arguments), to compare with the
 * chunks a compressed session sends, which are its recording.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VideoEncoderOptions } from '../../src/media/video-encoder';
import { serviceEncoderArgs } from './recording-ffmpeg';
import { rawInput, runFfmpeg, type Scene } from './scene';

/** A video as a decoder reads it. */
export interface CodedVideo {
  data: Buffer;
  /** An H.264 Annex B stream, an IVF file (VP8/VP9), JPEGs one after the other, or an MP4. */
  format: 'h264' | 'ivf' | 'jpegs' | 'mp4';
}

export interface SsimResult {
  /** The filter's mean over every frame, luma and chroma weighted by their sizes. */
  all: number;
  y: number;
  frames: number;
}

/**
 * SSIM of `video` decoded against the scene's raw frames, frame by frame in order (timestamps set
 * to frame numbers on both sides, so a decoder's timing cannot pair the wrong frames). Throws
 * unless the video has exactly the scene's frames; with `frames`, its first `frames` frames
 * (at most the scene's) are compared with the scene's first, and it may be longer.
 */
export async function ssimAgainstScene(
  ffmpegPath: string,
  scene: Scene,
  video: CodedVideo,
  workDir: string,
  frames?: number,
): Promise<SsimResult> {
  const dir = mkdtempSync(join(workDir, 'ssim-'));
  try {
    const videoPath = join(dir, 'video');
    const statsPath = join(dir, 'stats.log');
    writeFileSync(videoPath, video.data);
    const demuxer = { h264: 'h264', ivf: 'ivf', mp4: 'mov', jpegs: 'image2pipe' }[video.format];
    const input =
      video.format === 'jpegs'
        ? ['-f', demuxer, '-c:v', 'mjpeg', '-i', videoPath]
        : ['-f', demuxer, '-i', videoPath];
    const compared = Math.min(frames ?? scene.frames, scene.frames);
    const trim = frames === undefined ? '' : `trim=end_frame=${compared},`;
    const align = `${trim}settb=1/${scene.fps},setpts=N`;
    // JPEGs decode to full-range yuvj420p: converted to the camera's limited range to compare.
    const graph =
      `[1:v]format=yuv420p,${align}[coded];[0:v]${align}[camera];` +
      `[coded][camera]ssim=stats_file=${statsPath}`;
    await runFfmpeg(ffmpegPath, [
      '-hide_banner',
      '-nostats',
      '-nostdin',
      ...rawInput(scene),
      ...input,
      '-lavfi',
      graph,
      '-f',
      'null',
      '-',
    ]);
    return readSsim(statsPath, compared);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The per-frame stats file: `n:1 Y:0.93 U:0.97 V:0.97 All:0.95 (12.9)` per line. */
function readSsim(statsPath: string, expectedFrames: number): SsimResult {
  const frames = readFileSync(statsPath, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('n:'));
  if (frames.length !== expectedFrames) {
    throw new Error(`SSIM over ${frames.length} frames, the scene has ${expectedFrames}`);
  }
  let all = 0;
  let y = 0;
  for (const line of frames) {
    all += Number(/ All:([\d.]+)/.exec(line)?.[1] ?? NaN);
    y += Number(/ Y:([\d.]+)/.exec(line)?.[1] ?? NaN);
  }
  if (!Number.isFinite(all) || !Number.isFinite(y)) {
    throw new Error(`unreadable SSIM stats: ${frames[0]}`);
  }
  return { all: all / frames.length, y: y / frames.length, frames: frames.length };
}

/**
 * What framegate records from a JPEG session of the scene: the JPEGs through the service's own
 * encoder arguments (taken from VideoEncoderProcess), H.264 Annex B out.
 */
export function jpegPathRecording(
  ffmpegPath: string,
  jpegs: Buffer[],
  options: Omit<VideoEncoderOptions, 'onAccessUnit'>,
): Promise<{ data: Buffer; args: string[] }> {
  const args = serviceEncoderArgs(ffmpegPath, options);
  return runFfmpeg(ffmpegPath, args, jpegs).then((data) => ({ data, args }));
}
