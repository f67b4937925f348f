import type { CpuClass } from '../../media/cpu-class';
import { runTool } from './tool-process';

/**
 * Image work of the engine (sharp: libvips) runs in a child node process, never in the
 * service's: libvips works on the process's libuv thread pool, which the spool's writes and
 * fdatasyncs need for timely acks (see src/media/image-decoder.ts), and a job's picture may be
 * 33 megapixels. The child gets the same pacer, CPU class and cancellation as ffmpeg. One request
 * on stdin (JSON), one answer on stdout (JSON); paths are relative to the job's folder, its cwd.
 * Inline, so the same code runs from the TypeScript sources and the build.
 */
const SHARP_SCRIPT = `
const sharp = require(process.argv[1]);
sharp.cache(false);
sharp.concurrency(1);
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (t) => { input += t; });
process.stdin.on('end', () => { main(JSON.parse(input)).then((out) => process.stdout.write(JSON.stringify(out)), (err) => { process.stderr.write(String((err && err.message) || err)); process.exit(1); }); });
const open = (file, maxPixels) => sharp(file, { limitInputPixels: maxPixels, failOn: 'error' });
async function main(req) {
  if (req.op === 'metadata') {
    const out = [];
    for (const file of req.files) {
      try {
        const m = await open(file, req.maxPixels).metadata();
        out.push({ format: m.format, width: m.width, height: m.height, orientation: m.orientation || 1,
          space: m.space, hasAlpha: !!m.hasAlpha, exif: !!m.exif, pages: m.pages || 1 });
      } catch (err) {
        out.push({ error: String((err && err.message) || err) });
      }
    }
    return out;
  }
  if (req.op === 'jpeg') {
    for (const item of req.items) {
      await open(item.from, req.maxPixels).rotate().flatten({ background: '#000000' })
        .toColourspace('srgb').jpeg({ quality: req.quality }).toFile(item.to);
    }
    return { done: req.items.length };
  }
  if (req.op === 'resize') {
    const started = process.hrtime.bigint();
    let p = open(req.from, req.maxPixels).rotate()
      .resize(req.width, req.height, { fit: 'fill', kernel: 'lanczos3' });
    p = req.format === 'jpeg' ? p.jpeg({ quality: req.quality }) : req.format === 'webp' ? p.webp({ quality: req.quality }) : p.png();
    await p.toFile(req.to);
    return { ms: Number(process.hrtime.bigint() - started) / 1e6 };
  }
  throw new Error('unknown op ' + req.op);
}
`;

/** Answers of `metadata`, one per file: its facts, or why sharp refused it. */
export type SharpMetadata =
  | {
      format: string;
      width: number;
      height: number;
      /** EXIF orientation (1 = as stored). */
      orientation: number;
      space: string;
      hasAlpha: boolean;
      exif: boolean;
      pages: number;
    }
  | { error: string };

export type SharpRequest =
  | { op: 'metadata'; files: string[]; maxPixels: number }
  /** Each `from` as an upright, opaque sRGB JPEG `to`. */
  | { op: 'jpeg'; items: Array<{ from: string; to: string }>; quality: number; maxPixels: number }
  /**
   * `from` to exactly width×height (lanczos3), written as `format`: the sharp side of bench:jobs'
   * upscale comparison (the engine upscales with ffmpeg, which scored higher there).
   */
  | {
      op: 'resize';
      from: string;
      to: string;
      width: number;
      height: number;
      format: 'jpeg' | 'png' | 'webp';
      quality: number;
      maxPixels: number;
    };

/** Upper bound of an answer: `metadata` of MAX_IMAGES files is about 4 MB of JSON. */
const ANSWER_LIMIT_BYTES = 32 * 1024 * 1024;

let sharpEntry: string | undefined;

/** Runs one request in a sharp child process inside `cwd`. */
export async function runSharp<T>(
  request: SharpRequest,
  ctx: { cwd: string; signal: AbortSignal; cpuClass: CpuClass },
): Promise<T> {
  sharpEntry ??= require.resolve('sharp');
  const body = Buffer.from(JSON.stringify(request));
  const stdout = await runTool({
    command: process.execPath,
    args: ['-e', SHARP_SCRIPT, sharpEntry],
    cwd: ctx.cwd,
    signal: ctx.signal,
    cpuClass: ctx.cpuClass,
    label: `sharp (${request.op})`,
    stdoutLimit: ANSWER_LIMIT_BYTES,
    feed: async (stdin) => {
      await new Promise<void>((resolve, reject) =>
        stdin.write(body, (err) => (err ? reject(err) : resolve())),
      );
    },
  });
  return JSON.parse(stdout) as T;
}
