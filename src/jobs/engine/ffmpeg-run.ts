import type { Writable } from 'node:stream';
import type { EngineContext } from './engine-context';
import { BadInputError, isTransientStderr } from './errors';
import { cpuClassOf } from './inspect';
import type { ProgressMeter } from './progress';
import { runTool, ToolFailure } from './tool-process';

export interface FfmpegRun {
  /** Inputs, filters and outputs (every path relative: `./in/…`, `./out/…`). */
  args: string[];
  /** Names the job in messages: `transcode`. */
  label: string;
  meter: ProgressMeter;
  /** Writes ffmpeg's stdin (`-i pipe:0`). */
  feed?: (stdin: Writable) => Promise<void>;
}

/**
 * Runs ffmpeg in the job's folder with the arguments every job run gets: no interaction on stdin,
 * no banner or stats, errors only on stderr, progress as key=value lines on fd 3, overwrite. A
 * failure is the input's (BadInputError with ffmpeg's last error lines) unless ffmpeg was killed
 * by a signal that was not ours or says the machine failed it (no space, no file descriptors, no
 * memory): those are ordinary errors, which the queue retries.
 */
export async function runFfmpeg(ctx: EngineContext, run: FfmpegRun): Promise<void> {
  try {
    await runTool({
      command: ctx.tools.ffmpeg,
      args: [
        '-nostdin',
        '-hide_banner',
        '-nostats',
        '-loglevel',
        'error',
        '-progress',
        'pipe:3',
        '-y',
        ...run.args,
      ],
      cwd: ctx.dir,
      signal: ctx.signal,
      cpuClass: cpuClassOf(ctx),
      label: `ffmpeg (${run.label})`,
      feed: run.feed,
      onFd3Line: (line) => run.meter.line(line),
    });
  } catch (err) {
    if (err instanceof ToolFailure && !err.exitSignal && !isTransientStderr(err.stderrTail)) {
      throw new BadInputError(
        `${run.label}: the input could not be processed${err.stderrTail ? ` (ffmpeg: ${err.stderrTail})` : ''}`,
      );
    }
    throw err;
  }
}

const encoderLists = new Map<string, Promise<Set<string>>>();

/**
 * The encoders an ffmpeg build has (`ffmpeg -encoders`), read once per binary: builds differ
 * (libx265 and libmp3lame are optional), and a job asking for one that is missing is refused
 * with a clear message rather than failing inside ffmpeg.
 */
export function ffmpegEncoders(ffmpeg: string): Promise<Set<string>> {
  let list = encoderLists.get(ffmpeg);
  if (!list) {
    list = runTool({
      command: ffmpeg,
      args: ['-hide_banner', '-nostdin', '-encoders'],
      cwd: '/',
      signal: new AbortController().signal,
      cpuClass: 'normal',
      label: 'ffmpeg -encoders',
      stdoutLimit: 4 * 1024 * 1024,
    }).then((stdout) => {
      const names = new Set<string>();
      // Lines like " V....D libx264              libx264 H.264 / AVC …"
      for (const match of stdout.matchAll(/^ [VAS][A-Z.]{5} (\S+)/gm)) {
        names.add(match[1]);
      }
      return names;
    });
    // A failed read is not kept: the next job asks again.
    list.catch(() => encoderLists.delete(ffmpeg));
    encoderLists.set(ffmpeg, list);
  }
  return list;
}

/** Refuses a job that needs an encoder this ffmpeg build lacks. */
export async function requireEncoder(
  ctx: EngineContext,
  encoder: string,
  what: string,
): Promise<void> {
  if (!(await ffmpegEncoders(ctx.tools.ffmpeg)).has(encoder)) {
    throw new BadInputError(
      `${what} is not available: this server's ffmpeg has no ${encoder} encoder`,
    );
  }
}
