/**
 * bench:jobs: what the media job engine costs, each figure next to its baseline measured in the
 * same run on the same machine. Progress goes to stderr, one JSON object to stdout.
 *
 * Sections (each a function in SECTIONS, run in order; a later one is added there):
 * - imagesToVideo: `images-to-video` of 600 640×480 camera-like JPEGs at 10 fps through runJob
 *   (inspection, sharp child, ffmpeg fed on stdin, outputs hashed and probed) against bare ffmpeg
 *   reading the same files (`-framerate 10 -i frame-%04d.jpg`, the obvious command line) with the
 *   same encoder settings; runs alternate, medians compared. Aim: the engine at ≥ 0.9 of bare
 *   ffmpeg's speed.
 * - upscaleImage: an image made twice as large by sharp (lanczos3, as the engine runs it: in a
 *   child process) and by ffmpeg (`scale=flags=lanczos`): wall time of each, and SSIM (ffmpeg's
 *   `ssim` filter) of each against the original the input was made from by halving it.
 * - recordingWithJobs (bench/jobs-recording.ts): bench:recording's real-time sessions kept up
 *   while a batch of media jobs runs through the service, against the figure without jobs in the
 *   same run. Aim: ≥ 0.9.
 *
 * Both sides of every comparison run at the service's priority: the engine's default background
 * class is a scheduling choice, and other work on the machine should weigh on both alike.
 *
 * Env (all optional): BENCH_JOB_FRAMES (600), BENCH_JOB_ROUNDS (3), BENCH_FRAME_BYTES (25000),
 * BENCH_UPSCALE_ROUNDS (5), BENCH_QUIET_WAIT_SECONDS (20), BENCH_JOB_SECTIONS (all; e.g.
 * `upscaleImage`).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { runJob, type EngineContext } from '../src/jobs/engine';
import { engineJobSchema } from '../src/jobs/engine/job-spec';
import { runSharp } from '../src/jobs/engine/sharp-worker';
import { X264_PRESET, DEFAULT_CRF } from '../src/jobs/engine/video-args';
import { locateTool } from '../src/media/ffmpeg-locator';
import { testDir } from '../test/support/dirs';
import { recordingWithJobs } from './jobs-recording';
import { waitForQuiet } from './support/recording-cpu';
import { ffmpegVersion } from './support/recording-ffmpeg';
import { recordingFrames } from './support/recording-frames';
import { Cleanup, describe, machineInfo, progressFor, sourceState } from './support/run-info';

const run = promisify(execFile);
const progress = progressFor('jobs');
const FPS = 10;
/** The aim: the engine's images-to-video at this share of bare ffmpeg's speed or better. */
const SPEED_AIM = 0.9;
/** The machine counts as quiet below this share of all cores busy. */
const QUIET_BUSY_PCT = 15;
const UPSCALE_WIDTH = 1920;
const UPSCALE_HEIGHT = 1080;
/** USER_HZ, the unit of /proc's CPU times on Linux. */
const CLOCK_TICKS = 100;

interface Settings {
  frames: number;
  rounds: number;
  frameBytes: number;
  upscaleRounds: number;
  quietWaitSeconds: number;
}

function settingsFromEnv(env: NodeJS.ProcessEnv): Settings {
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    const value = raw === undefined || raw === '' ? fallback : Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new Error(`${name} must be an integer in [${min}, ${max}], got ${raw}`);
    }
    return value;
  };
  return {
    frames: int('BENCH_JOB_FRAMES', 600, 10, 36_000),
    rounds: int('BENCH_JOB_ROUNDS', 3, 1, 20),
    frameBytes: int('BENCH_FRAME_BYTES', 25_000, 2_000, 500_000),
    upscaleRounds: int('BENCH_UPSCALE_ROUNDS', 5, 1, 50),
    quietWaitSeconds: int('BENCH_QUIET_WAIT_SECONDS', 20, 0, 600),
  };
}

interface Env {
  settings: Settings;
  tools: { ffmpeg: string; ffprobe: string };
  root: string;
}

type Section = (env: Env) => Promise<Record<string, unknown>>;

/** The sections, in order; each result lands in the JSON under its key. */
const SECTIONS: Record<string, Section> = {
  imagesToVideo,
  upscaleImage,
  recordingWithJobs,
};

/** BENCH_JOB_SECTIONS=a,b runs only those (default: all). */
function chosenSections(env: NodeJS.ProcessEnv): Array<[string, Section]> {
  const names = (env.BENCH_JOB_SECTIONS ?? '').split(',').filter(Boolean);
  for (const name of names) {
    if (!(name in SECTIONS)) {
      throw new Error(
        `BENCH_JOB_SECTIONS: no section ${name} (${Object.keys(SECTIONS).join(', ')})`,
      );
    }
  }
  return Object.entries(SECTIONS).filter(([name]) => names.length === 0 || names.includes(name));
}

async function main(): Promise<number> {
  const settings = settingsFromEnv(process.env);
  const cleanup = new Cleanup(progress);
  cleanup.stopOnSignals();
  const tools = {
    ffmpeg: locateTool('ffmpeg', process.env.FFMPEG_PATH).path,
    ffprobe: locateTool('ffprobe', process.env.FFPROBE_PATH).path,
  };
  const root = testDir('bench-jobs');
  cleanup.add('temp dir', () => rmSync(root, { recursive: true, force: true }));
  const result: Record<string, unknown> = {
    bench: 'jobs',
    when: new Date().toISOString(),
    source: sourceState(),
    machine: machineInfo(),
    ffmpeg: { path: tools.ffmpeg, version: ffmpegVersion(tools.ffmpeg) },
    settings,
  };
  try {
    for (const [name, section] of chosenSections(process.env)) {
      progress(`section ${name}`);
      result[name] = await section({ settings, tools, root });
    }
  } catch (err) {
    progress(`failed: ${describe(err)}`);
    result.error = describe(err);
  } finally {
    await cleanup.run();
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  return result.error ? 1 : 0;
}

async function imagesToVideo({ settings, tools, root }: Env): Promise<Record<string, unknown>> {
  const dir = join(root, 'i2v');
  mkdirSync(join(dir, 'in'), { recursive: true });
  progress(`making ${settings.frames} 640×480 JPEGs of about ${settings.frameBytes} bytes`);
  const frames = await recordingFrames(settings.frames, settings.frameBytes);
  const files = frames.jpegs.map((jpeg, i) => {
    const name = `in/frame-${String(i + 1).padStart(5, '0')}.jpg`;
    writeFileSync(join(dir, name), jpeg);
    return name;
  });
  const job = engineJobSchema.parse({ type: 'images-to-video', images: { files }, fps: FPS });
  const ctx: EngineContext = {
    dir,
    signal: new AbortController().signal,
    onProgress: () => undefined,
    tools,
    cpuClass: 'normal',
  };
  const bareArgs = [
    '-nostdin',
    '-hide_banner',
    '-loglevel',
    'error',
    '-y',
    '-framerate',
    String(FPS),
    '-i',
    'in/frame-%05d.jpg',
    '-c:v',
    'libx264',
    '-preset',
    X264_PRESET,
    '-crf',
    String(DEFAULT_CRF),
    '-pix_fmt',
    'yuv420p',
    '-movflags',
    '+faststart',
    'bare.mp4',
  ];
  const engineSeconds: number[] = [];
  const bareSeconds: number[] = [];
  const engineCpu: number[] = [];
  const bareCpu: number[] = [];
  const busy: number[] = [];
  for (let round = 0; round < settings.rounds; round++) {
    busy.push(await waitForQuiet(settings.quietWaitSeconds, QUIET_BUSY_PCT, progress));
    // Alternating which goes first, so neither always runs on a warmer page cache.
    const order = round % 2 === 0 ? ['engine', 'bare'] : ['bare', 'engine'];
    for (const side of order) {
      const started = performance.now();
      const cpu = cpuSeconds();
      if (side === 'engine') {
        await runJob(job, ctx);
        engineSeconds.push((performance.now() - started) / 1000);
        engineCpu.push(cpuSeconds() - cpu);
      } else {
        await run(tools.ffmpeg, bareArgs, { cwd: dir });
        bareSeconds.push((performance.now() - started) / 1000);
        bareCpu.push(cpuSeconds() - cpu);
      }
    }
    progress(
      `  round ${round + 1}: engine ${engineSeconds[round].toFixed(2)} s (CPU ${engineCpu[round].toFixed(2)} s), ` +
        `bare ${bareSeconds[round].toFixed(2)} s (CPU ${bareCpu[round].toFixed(2)} s)`,
    );
  }
  const [engineFrames, bareFrames] = await Promise.all(
    ['out/video.mp4', 'bare.mp4'].map((path) => countFrames(tools.ffprobe, join(dir, path))),
  );
  const engine = median(engineSeconds);
  const bare = median(bareSeconds);
  return {
    frames: settings.frames,
    fps: FPS,
    jpeg: { quality: frames.quality, meanBytes: frames.meanBytes },
    encoder: { codec: 'libx264', preset: X264_PRESET, crf: DEFAULT_CRF },
    bareCommand: `ffmpeg ${bareArgs.join(' ')}`,
    framesOut: { engine: engineFrames, bare: bareFrames },
    engineSeconds: engineSeconds.map(r3),
    bareSeconds: bareSeconds.map(r3),
    engineCpuSeconds: engineCpu.map(r3),
    bareCpuSeconds: bareCpu.map(r3),
    machineBusyPctBeforeRounds: busy,
    medianSeconds: { engine: r3(engine), bare: r3(bare) },
    medianCpuSeconds: { engine: r3(median(engineCpu)), bare: r3(median(bareCpu)) },
    /** Bare ffmpeg's time over the engine's: the engine's speed as a share of bare ffmpeg's. */
    speedRatio: r3(bare / engine),
    /** The same by CPU time (this process and its children): steadier on a shared machine. */
    cpuSpeedRatio: r3(median(bareCpu) / median(engineCpu)),
    aim: SPEED_AIM,
    met: bare / engine >= SPEED_AIM,
  };
}

async function upscaleImage({ settings, tools, root }: Env): Promise<Record<string, unknown>> {
  const dir = join(root, 'upscale');
  mkdirSync(dir, { recursive: true });
  await photoLike(join(dir, 'original.png'), UPSCALE_WIDTH, UPSCALE_HEIGHT);
  // Halved by area averaging (neither contestant's own kernel), as a camera's smaller picture.
  await run(tools.ffmpeg, [
    '-nostdin',
    '-loglevel',
    'error',
    '-y',
    '-i',
    join(dir, 'original.png'),
    '-vf',
    `scale=${UPSCALE_WIDTH / 2}:${UPSCALE_HEIGHT / 2}:flags=area`,
    join(dir, 'small.png'),
  ]);
  const signal = new AbortController().signal;
  const sharpChildMs: number[] = [];
  const sharpInsideMs: number[] = [];
  const ffmpegMs: number[] = [];
  for (let round = 0; round < settings.upscaleRounds; round++) {
    let started = performance.now();
    const answer = await runSharp<{ ms: number }>(
      {
        op: 'resize',
        from: './small.png',
        to: './up-sharp.png',
        width: UPSCALE_WIDTH,
        height: UPSCALE_HEIGHT,
        format: 'png',
        quality: 100,
        maxPixels: UPSCALE_WIDTH * UPSCALE_HEIGHT,
      },
      { cwd: dir, signal, cpuClass: 'normal' },
    );
    sharpChildMs.push(performance.now() - started);
    sharpInsideMs.push(answer.ms);
    started = performance.now();
    await run(
      tools.ffmpeg,
      [
        '-nostdin',
        '-loglevel',
        'error',
        '-y',
        '-f',
        'png_pipe',
        '-i',
        'small.png',
        '-vf',
        `scale=${UPSCALE_WIDTH}:${UPSCALE_HEIGHT}:flags=lanczos`,
        'up-ffmpeg.png',
      ],
      { cwd: dir },
    );
    ffmpegMs.push(performance.now() - started);
  }
  const ssim = async (candidate: string): Promise<Record<string, number>> => {
    const { stderr } = await run(
      tools.ffmpeg,
      [
        '-nostdin',
        '-hide_banner',
        '-i',
        candidate,
        '-i',
        'original.png',
        '-lavfi',
        '[0:v]format=yuv444p[a];[1:v]format=yuv444p[b];[a][b]ssim',
        '-f',
        'null',
        '-',
      ],
      { cwd: dir },
    );
    const m = /SSIM Y:([\d.]+).*All:([\d.]+)/.exec(stderr);
    if (!m) {
      throw new Error(`no SSIM in ffmpeg's output: ${stderr.slice(-300)}`);
    }
    return { y: Number(m[1]), all: Number(m[2]) };
  };
  return {
    original: `${UPSCALE_WIDTH}×${UPSCALE_HEIGHT} PNG (camera-like scene with edges and text), halved by area, then doubled`,
    sharp: {
      kernel: 'lanczos3',
      msWall: median(sharpChildMs).toFixed(0),
      msInsideChild: median(sharpInsideMs).toFixed(0),
      ssim: await ssim('up-sharp.png'),
    },
    ffmpeg: {
      flags: 'lanczos',
      msWall: median(ffmpegMs).toFixed(0),
      ssim: await ssim('up-ffmpeg.png'),
    },
    rounds: settings.upscaleRounds,
  };
}

/**
 * A photo-like picture: a smooth random field with grain (as bench/support/recording-frames.ts),
 * and sharp edges on top (shapes and text), where scalers differ most.
 */
async function photoLike(path: string, width: number, height: number): Promise<void> {
  let state = 0x2545f491;
  const field = Buffer.alloc(64 * 36 * 3);
  for (let i = 0; i < field.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    field[i] = state >>> 24;
  }
  const base = await sharp(field, { raw: { width: 64, height: 36, channels: 3 } })
    .resize(width, height, { kernel: 'cubic' })
    .raw()
    .toBuffer();
  for (let i = 0; i < base.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    base[i] = Math.max(0, Math.min(255, base[i] + ((state >>> 24) % 9) - 4));
  }
  const svg = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
      `<rect x="200" y="150" width="500" height="300" fill="none" stroke="white" stroke-width="3"/>` +
      `<circle cx="1300" cy="600" r="220" fill="none" stroke="black" stroke-width="5"/>` +
      `<text x="240" y="800" font-family="sans-serif" font-size="64" fill="white">ACCOUNT 0042-7781</text>` +
      `<text x="240" y="900" font-family="sans-serif" font-size="28" fill="black">signed at branch 17, counter 3</text>` +
      `</svg>`,
  );
  await sharp(base, { raw: { width, height, channels: 3 } })
    .composite([{ input: svg }])
    .png()
    .toFile(path);
}

async function countFrames(ffprobe: string, path: string): Promise<number> {
  const { stdout } = await run(ffprobe, [
    '-v',
    'error',
    '-count_frames',
    '-select_streams',
    'v:0',
    '-show_entries',
    'stream=nb_read_frames',
    '-of',
    'csv=p=0',
    path,
  ]);
  return Number(stdout.trim());
}

/**
 * CPU seconds of this process and its children that were waited for (/proc/self/stat utime,
 * stime, cutime, cstime): the engine's own work, its ffmpeg and sharp children, or bare ffmpeg.
 */
function cpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14..17 of /proc/[pid]/stat; `fields` starts at field 3. Clock ticks: 100 a second.
  const ticks = [14, 15, 16, 17].reduce((sum, f) => sum + Number(fields[f - 3]), 0);
  return ticks / CLOCK_TICKS;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function r3(v: number): number {
  return Math.round(v * 1000) / 1000;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    progress(`crashed: ${describe(err)}`);
    process.exit(1);
  },
);
