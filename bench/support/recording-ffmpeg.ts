import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { AccessUnitSplitter } from '../../src/media/h264-stream';
import {
  type StreamSink,
  type VideoEncoderOptions,
  VideoEncoderProcess,
} from '../../src/media/video-encoder';

/** ffmpeg processes this benchmark started itself, killed on cleanup if still running. */
export class ChildSet {
  private readonly children = new Set<ChildProcess>();

  add(child: ChildProcess): void {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
  }

  killAll(): void {
    for (const child of this.children) {
      child.kill('SIGKILL');
    }
    this.children.clear();
  }
}

/**
 * The service's own encoder, stopped before it spawns: its `run()` receives the argument list that
 * `start()` builds, which this keeps instead of starting ffmpeg.
 */
class ArgumentCapture extends VideoEncoderProcess {
  args: string[] = [];

  protected override run(inputArgs: string[], outputArgs: string[], _sink: StreamSink): void {
    // Assembled exactly as PipedFfmpegProcess.run() assembles it.
    this.args = [...inputArgs, '-i', 'pipe:0', ...outputArgs, 'pipe:1'];
  }
}

/**
 * The ffmpeg arguments the service's video encoder uses for these options, taken from
 * VideoEncoderProcess itself, so the baseline cannot drift from what the service runs.
 */
export function serviceEncoderArgs(
  ffmpegPath: string,
  options: Omit<VideoEncoderOptions, 'onAccessUnit'>,
): string[] {
  const capture = new ArgumentCapture(ffmpegPath);
  capture.start({ ...options, onAccessUnit: () => undefined });
  if (capture.args.length === 0) {
    throw new Error('VideoEncoderProcess.start() did not build an ffmpeg command');
  }
  return capture.args;
}

export function ffmpegVersion(ffmpegPath: string): string {
  const out = execFileSync(ffmpegPath, ['-hide_banner', '-version'], { encoding: 'utf8' });
  return out.split('\n', 1)[0] ?? 'unknown';
}

export interface EncodeRun {
  frames: number;
  ms: number;
  fps: number;
  /** Access units in ffmpeg's output (service arguments only): must equal `frames`. */
  accessUnits: number | null;
  outputBytes: number;
}

/**
 * Runs ffmpeg with `args`, feeding `frames` JPEGs (cycling through `jpegs`) on stdin as fast as it
 * takes them; timed from spawn to exit. With `countAccessUnits` the output is H.264 Annex B on
 * stdout and its access units are counted.
 */
export async function encodeOnce(
  ffmpegPath: string,
  args: string[],
  jpegs: Buffer[],
  frames: number,
  children: ChildSet,
  countAccessUnits: boolean,
): Promise<EncodeRun> {
  const started = performance.now();
  const child = spawn(ffmpegPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-2000);
  });
  let accessUnits = 0;
  let outputBytes = 0;
  const splitter = countAccessUnits ? new AccessUnitSplitter(() => accessUnits++) : null;
  child.stdout.on('data', (chunk: Buffer) => {
    outputBytes += chunk.length;
    splitter?.push(chunk);
  });
  const closed = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  // EPIPE if ffmpeg dies early: its exit code reports that.
  child.stdin.on('error', () => undefined);
  for (let i = 0; i < frames; i++) {
    if (!child.stdin.write(jpegs[i % jpegs.length])) {
      await Promise.race([once(child.stdin, 'drain'), closed]);
    }
    if (child.exitCode !== null) {
      break;
    }
  }
  child.stdin.end();
  const code = await closed;
  const ms = performance.now() - started;
  if (code !== 0) {
    throw new Error(`ffmpeg exited with ${code}: ${stderr.trim()}`);
  }
  if (splitter && splitter.flush()) {
    accessUnits++;
  }
  return {
    frames,
    ms: Math.round(ms),
    fps: (frames / ms) * 1000,
    accessUnits: countAccessUnits ? accessUnits : null,
    outputBytes,
  };
}

/**
 * What a naive recorder would run once the session closed: every stored JPEG through one ffmpeg
 * into an MP4 file, with ffmpeg's defaults (x264 threads and lookahead included).
 */
export function naiveArgs(fps: number, preset: string, outPath: string): string[] {
  return [
    '-hide_banner',
    '-loglevel',
    'error',
    '-y',
    '-f',
    'image2pipe',
    '-c:v',
    'mjpeg',
    '-framerate',
    String(fps),
    '-i',
    'pipe:0',
    '-c:v',
    'libx264',
    '-preset',
    preset,
    '-pix_fmt',
    'yuv420p',
    outPath,
  ];
}

/**
 * What `close` waits for in the encoder: the service's ffmpeg is fed `frames` JPEGs, left until
 * it has output every access unit it can (all but the last one or two, which it holds until more
 * input or the end of it), then its stdin is closed; timed from that close to its exit.
 */
export async function encoderEofToExitMs(
  ffmpegPath: string,
  args: string[],
  jpegs: Buffer[],
  frames: number,
  children: ChildSet,
): Promise<number> {
  const child = spawn(ffmpegPath, args, { stdio: ['pipe', 'pipe', 'ignore'] });
  children.add(child);
  let accessUnits = 0;
  const splitter = new AccessUnitSplitter(() => accessUnits++);
  child.stdout.on('data', (chunk: Buffer) => splitter.push(chunk));
  const closed = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  child.stdin.on('error', () => undefined);
  for (let i = 0; i < frames; i++) {
    child.stdin.write(jpegs[i % jpegs.length]);
  }
  // Output stops changing once ffmpeg waits for input: then it is idle, as at a session's end.
  let seen = -1;
  for (let polls = 0; polls < 100 && accessUnits !== seen; polls++) {
    seen = accessUnits;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const started = performance.now();
  child.stdin.end();
  const code = await closed;
  if (code !== 0) {
    throw new Error(`ffmpeg exited with ${code}`);
  }
  return performance.now() - started;
}
