import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { type CpuClass, setCpuClass } from './cpu-class';
import { AccessUnitSplitter } from './h264-stream';
import {
  type LaunchControl,
  type LaunchedPipes,
  PROCESS_STARTER,
  type ProcessStarter,
} from './process-launcher';
import { FFMPEG_SPAWNS } from './spawn-pacer';

/** Tail of ffmpeg's stderr kept for error messages (at `-loglevel error` it is short anyway). */
const STDERR_TAIL_CHARS = 4096;
/** Lines of that tail quoted in an error message. */
const STDERR_LINES = 5;
/**
 * Input buffered ahead of ffmpeg's stdin (a few 640×480 JPEGs): enough that the encoder never
 * waits on a round trip through our event loop, small enough that backpressure stays prompt.
 */
const INPUT_HIGH_WATER_MARK = 256 * 1024;

/**
 * Seconds between keyframes. The muxer cuts a fragment only at a keyframe, so this bounds how much
 * of the MP4 a crash leaves unwritten; nothing is lost by that, since recovery rebuilds the rest
 * from the spool. One second cost 7 % more bits and 3 % more CPU than five on the camera scene
 * (docs/recording.md, "Encoder settings and what they cost").
 */
const KEYFRAME_INTERVAL_S = 5;

/** Where an encoder's stdout goes: chunks as they come, then end of stream. */
export interface StreamSink {
  push(chunk: Buffer): void;
  end(): void;
}

/**
 * One long-lived ffmpeg fed on stdin and read on stdout.
 *
 * Spawned with child_process rather than fluent-ffmpeg, whose stream handling fought this use:
 * a spawn error (ENOENT, EACCES) throws a TypeError inside its exit handler and the command never
 * settles; its 'end' fires before a piped stdout has drained; it fails a command 20 ms after the
 * output stream closes unless the exit was seen first (fluent-ffmpeg issues #1135, #1171); it
 * spawns `ffmpeg -formats` and `-encoders` before the first command; and its setFfmpegPath is
 * process-wide, not per command. Here `closed` alone decides: it comes after the exit and after
 * stdout has ended, so success means every byte reached the sink. ffmpeg is started through the
 * process launcher (`PROCESS_STARTER`), so that the service's event loop never waits for a fork.
 */
export class PipedFfmpegProcess {
  private readonly input = new PassThrough({ highWaterMark: INPUT_HIGH_WATER_MARK });
  /** ffmpeg's pid and pipes, once it runs. */
  private child: LaunchedPipes | null = null;
  private control: LaunchControl | null = null;
  /** ffmpeg has exited (or never started): its pid is no longer ours. */
  private gone = false;
  /** `run()` was called: input is accepted, and buffered until ffmpeg's turn to start comes. */
  private running = false;
  /** Withdraws a start still waiting for its turn. */
  private cancelStart: () => void = () => undefined;
  /** The CPU class asked for before ffmpeg existed, applied when it starts. */
  private cpuClass: CpuClass | null = null;
  /** The class last applied to the running ffmpeg (a new process is `normal`). */
  private appliedClass: CpuClass = 'normal';
  private done: Promise<void> = Promise.resolve();
  private stderr = '';
  private closed = false;
  private killed = false;

  constructor(
    private readonly ffmpegPath: string,
    private readonly label: string,
    private readonly starter: ProcessStarter = PROCESS_STARTER,
  ) {}

  /** Writes to ffmpeg's stdin; false when its buffer is full (then await `drained()`). */
  write(data: Buffer): boolean {
    if (!this.running || this.closed) {
      throw new Error(`${this.label} is not accepting input`);
    }
    return this.input.write(data);
  }

  /** Resolves when `write` may be called again; rejects if ffmpeg failed meanwhile. */
  async drained(): Promise<void> {
    if (this.input.writableNeedDrain) {
      await Promise.race([once(this.input, 'drain'), this.done]);
    }
  }

  /** Closes stdin; resolves when ffmpeg exited 0 and its whole output reached the sink. */
  end(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.input.end();
    }
    return this.done;
  }

  /** Settles when ffmpeg exits, without closing its input: rejects if it failed. */
  exited(): Promise<void> {
    return this.done;
  }

  /** Moves ffmpeg to a CPU class (best effort, see `setCpuClass`). */
  setCpuClass(cpuClass: CpuClass): void {
    this.cpuClass = cpuClass;
    const child = this.child;
    // Until it has exited (its pid is ours until then): one whose stdin is closed may still have
    // frames to encode that a `close` waits for.
    if (child && !this.killed && !this.gone) {
      setCpuClass(child.pid, cpuClass, this.appliedClass);
      this.appliedClass = cpuClass;
    }
  }

  /** Stops ffmpeg at once; `end()` and `drained()` then reject. */
  kill(): void {
    this.closed = true;
    this.killed = true;
    this.input.destroy();
    this.control?.kill('SIGKILL');
    // Killed before its turn to start: it never will, and that ends it.
    this.cancelStart();
  }

  protected run(inputArgs: string[], outputArgs: string[], sink: StreamSink): void {
    if (this.running) {
      throw new Error(`${this.label} was already started`);
    }
    this.running = true;
    let settle: { resolve(): void; reject(err: Error): void } = {
      resolve: () => undefined,
      reject: () => undefined,
    };
    this.done = new Promise<void>((resolve, reject) => {
      settle = { resolve, reject };
    });
    // Marked handled here: a failure surfaces through end() or drained(), whoever asks first.
    this.done.catch(() => undefined);
    // Input written meanwhile waits in `input` (bounded: writers honour its backpressure).
    let launched = false;
    const withdraw = FFMPEG_SPAWNS.schedule(() => {
      launched = true;
      this.cancelStart = () => undefined;
      this.spawnNow([...inputArgs, '-i', 'pipe:0', ...outputArgs, 'pipe:1'], sink, settle);
    });
    if (!launched) {
      this.cancelStart = () => {
        this.cancelStart = () => undefined;
        withdraw();
        settle.reject(new Error(`${this.label} was killed`));
      };
    }
  }

  private spawnNow(
    args: string[],
    sink: StreamSink,
    settle: { resolve(): void; reject(err: Error): void },
  ): void {
    let sinkError: Error | null = null;
    this.control = this.starter.launch(this.ffmpegPath, args, {
      started: (child) => {
        this.child = child;
        if (this.cpuClass !== null && this.cpuClass !== 'normal') {
          this.setCpuClass(this.cpuClass);
        }
        // EPIPE once ffmpeg has exited: its exit status says why, and `closed` reports that.
        child.stdin.on('error', () => undefined);
        this.input.pipe(child.stdin);
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (text: string) => {
          this.stderr = (this.stderr + text).slice(-STDERR_TAIL_CHARS);
        });
        child.stdout.on('data', (chunk: Buffer) => {
          if (sinkError) {
            return;
          }
          try {
            sink.push(chunk);
          } catch (err) {
            sinkError = err instanceof Error ? err : new Error(String(err));
            this.control?.kill('SIGKILL');
          }
        });
      },
      // Only when the process could not be started at all.
      failed: (err) => {
        this.gone = true;
        settle.reject(this.failure(err.message));
      },
      closed: (code, signal, reason) => {
        this.gone = true;
        if (sinkError) {
          settle.reject(this.failure(`its output was unreadable: ${sinkError.message}`));
        } else if (this.killed) {
          settle.reject(new Error(`${this.label} was killed`));
        } else if (reason) {
          settle.reject(this.failure(reason));
        } else if (code !== 0) {
          settle.reject(
            this.failure(signal ? `ffmpeg died of ${signal}` : `ffmpeg exited with code ${code}`),
          );
        } else {
          try {
            sink.end();
            settle.resolve();
          } catch (err) {
            settle.reject(this.failure(`its output was unreadable: ${String(err)}`));
          }
        }
      },
    });
  }

  private failure(reason: string): Error {
    const tail = this.stderr
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean)
      .slice(-STDERR_LINES)
      .join(' | ');
    return new Error(`${this.label} failed: ${reason}${tail ? ` (ffmpeg: ${tail})` : ''}`);
  }
}

export interface VideoEncoderOptions {
  width: number;
  height: number;
  /** Nominal frame rate: sets the keyframe interval; sample times come from capture pts. */
  fps: number;
  /** x264 preset, e.g. `superfast`. */
  preset: string;
  /** x264 constant rate factor (0–51, lower is better). */
  crf: number;
  /**
   * A key frame every this many input frames, counted from the encoder's first (a tail encoder of
   * `VideoLanes`: each chunk it is given must start with one).
   */
  keyframeEvery?: number;
  /** One call per input JPEG, in input order, with the access unit in Annex B. */
  onAccessUnit: (au: Buffer) => void;
}

/**
 * One session's H.264 encoder: JPEGs (at the output size, or smaller with its aspect) in on
 * stdin, one access unit out per JPEG. The caller maps access units back to capture times by
 * order, so a frame ffmpeg cannot decode stops the encoder (`-xerror`) instead of being skipped.
 *
 * An access unit arrives about two JPEGs after its own: ffmpeg's JPEG parser passes a frame on
 * when the next one starts, and an access unit is known complete when the next one's delimiter
 * arrives. `end()` delivers the rest.
 */
export class VideoEncoderProcess extends PipedFfmpegProcess {
  constructor(ffmpegPath: string, starter?: ProcessStarter) {
    super(ffmpegPath, 'video encoder', starter);
  }

  start(options: VideoEncoderOptions): void {
    const splitter = new AccessUnitSplitter(options.onAccessUnit);
    const gop = Math.max(1, Math.round(options.fps * KEYFRAME_INTERVAL_S));
    this.run(
      [
        '-hide_banner',
        '-loglevel',
        'error',
        // Stop on a frame that does not decode: skipping it would shift every later timestamp.
        '-xerror',
        // Without these ffmpeg buffers seconds of input to probe it before encoding anything.
        '-probesize',
        '32',
        '-analyzeduration',
        '0',
        '-f',
        'image2pipe',
        '-c:v',
        'mjpeg',
        '-framerate',
        String(Math.max(1, Math.round(options.fps))),
        // The JPEG decoder on the encoder's one core too (it costs ~10 % of the encoding).
        '-threads',
        '1',
      ],
      [
        // Neither drop nor duplicate: exactly one output frame per input JPEG.
        '-vsync',
        'passthrough',
        // JPEGs come at the output size, and then the scale filter passes each frame through
        // untouched (measured: no cost, docs/recording.md), or smaller with its aspect
        // (FramePipeline), which it scales up; a size change between frames is followed.
        '-s',
        `${options.width}x${options.height}`,
        '-c:v',
        'libx264',
        '-preset',
        options.preset,
        // No lookahead: each frame comes out as the next goes in, so finishing costs nothing.
        '-tune',
        'zerolatency',
        '-crf',
        String(options.crf),
        // 4:2:0 in the JPEG's own full range, flagged as such in the stream (VUI
        // video_full_range_flag): converting to limited range was a swscale pass costing 7 % of
        // the encoder's CPU and buying nothing (docs/recording.md, "Encoder settings and what
        // they cost"). The colour description is written whole, as a canvas JPEG is (sRGB
        // primaries and transfer, BT.601 matrix): given only the matrix, as Debian's ffmpeg
        // passes it on from the JPEG decoder, Chromium drops the full-range flag and shows every
        // level stretched. No B-frames.
        '-pix_fmt',
        'yuvj420p',
        '-color_primaries',
        'bt709',
        '-color_trc',
        'iec61966-2-1',
        '-colorspace',
        'bt470bg',
        '-bf',
        '0',
        '-g',
        String(gop),
        ...(options.keyframeEvery === undefined
          ? []
          : ['-force_key_frames', `expr:eq(mod(n,${options.keyframeEvery}),0)`]),
        // Access unit delimiters are how the output stream is split into frames. No sub-block
        // partitions and full-pixel motion only: a counter camera's picture barely moves, and
        // both searches cost 24-28 % of the encoder's CPU for 0.001 of SSIM (docs/recording.md,
        // "Encoder settings and what they cost").
        '-x264-params',
        'aud=1:partitions=none:subme=0',
        // Measured: two single-threaded encoders scale almost linearly on two cores; x264's own
        // threads gain little at this size.
        '-threads',
        '1',
        '-f',
        'h264',
      ],
      {
        push: (chunk) => splitter.push(chunk),
        end: () => {
          const last = splitter.flush();
          if (last) {
            options.onAccessUnit(last);
          }
        },
      },
    );
  }
}
