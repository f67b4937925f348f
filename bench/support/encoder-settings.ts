/**
 * What each encoder setting costs: ffmpeg alone on the scene's JPEGs, one variant of the
 * service's encoder arguments at a time, CPU per frame (the ffmpeg process, as fast as it goes),
 * SSIM against the camera's frames and bitrate. The figures behind docs/recording.md, "Encoder
 * settings and what they cost".
 */
import { CpuWindow } from './recording-cpu';
import { round } from './recording-load';
import { runFfmpeg, type Scene } from './scene';
import { ssimAgainstScene } from './video-quality';

export interface SettingsVariant {
  name: string;
  /** What it changes against the one before it in the list, or against the current arguments. */
  change: string;
  args: string[];
  /** Decodes only (no output to judge): CPU alone. */
  decodeOnly?: boolean;
}

export interface SettingsFigures {
  name: string;
  change: string;
  cpuMsPerFrame: number;
  /** Each run's; `cpuMsPerFrame` is the least, the least disturbed. */
  runsMs: number[];
  ssim: number | null;
  kbps: number | null;
  args: string[];
}

/** `args` with the value after `flag` replaced (the flag must be there). */
export function withArg(args: string[], flag: string, value: string): string[] {
  const at = args.indexOf(flag);
  if (at < 0) {
    throw new Error(`no ${flag} in ${args.join(' ')}`);
  }
  return [...args.slice(0, at + 1), value, ...args.slice(at + 2)];
}

/** `args` without `flag` and its value. */
export function withoutArg(args: string[], flag: string): string[] {
  const at = args.indexOf(flag);
  if (at < 0) {
    throw new Error(`no ${flag} in ${args.join(' ')}`);
  }
  return [...args.slice(0, at), ...args.slice(at + 2)];
}

/** `args` with `params` appended to `-x264-params`. */
export function withX264(args: string[], params: string): string[] {
  const at = args.indexOf('-x264-params');
  return withArg(args, '-x264-params', `${args[at + 1]}:${params}`);
}

/** The service's arguments up to the output, writing nothing: what decoding alone costs. */
export function decodeOnly(args: string[], pixFmt: string | null): string[] {
  const input = args.slice(0, args.indexOf('pipe:0') + 1);
  return [...input, ...(pixFmt ? ['-pix_fmt', pixFmt] : []), '-f', 'null', '-'];
}

/**
 * Runs every variant `runs` times on `jpegs` (the scene's frames, in order), output on stdout,
 * and judges its output against the scene.
 */
export async function measureSettings(
  ffmpegPath: string,
  scene: Scene,
  jpegs: Buffer[],
  variants: SettingsVariant[],
  runs: number,
  workDir: string,
  say: (line: string) => void,
): Promise<SettingsFigures[]> {
  const figures: SettingsFigures[] = [];
  for (const variant of variants) {
    const runsMs: number[] = [];
    let output: Buffer = Buffer.alloc(0);
    for (let r = 0; r < runs; r++) {
      const cpu = new CpuWindow();
      output = await runFfmpeg(ffmpegPath, variant.args, jpegs);
      runsMs.push(round(cpu.end().childrenCpuMs / jpegs.length, 3));
    }
    let ssim: number | null = null;
    let kbps: number | null = null;
    if (!variant.decodeOnly) {
      ssim = round(
        (await ssimAgainstScene(ffmpegPath, scene, { data: output, format: 'h264' }, workDir)).all,
        5,
      );
      kbps = round((output.length * 8 * scene.fps) / jpegs.length / 1000, 1);
    }
    const entry = {
      name: variant.name,
      change: variant.change,
      cpuMsPerFrame: Math.min(...runsMs),
      runsMs,
      ssim,
      kbps,
      args: variant.args,
    };
    say(
      `    ${variant.name}: ${entry.cpuMsPerFrame} ms/frame` +
        (ssim === null ? '' : `, SSIM ${ssim}, ${kbps} kbit/s`),
    );
    figures.push(entry);
  }
  return figures;
}
