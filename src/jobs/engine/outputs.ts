import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { EngineContext, JobOutput } from './engine-context';
import { cpuClassOf } from './inspect';
import type { Demuxer } from './sniff';
import { runTool } from './tool-process';

/** Folder of the outputs, inside the job's folder. */
export const OUT_DIR = 'out';

/** An output file a job type writes, before it is hashed and probed. */
export interface OutputFile {
  name: string;
  contentType: string;
  primary: boolean;
  /** How to probe it; null for a file that is not media (WebVTT). */
  demuxer: Demuxer | null;
}

/** Content types and probe demuxers by extension. */
export const OUTPUT_KINDS = {
  mp4: { contentType: 'video/mp4', demuxer: 'mov' },
  wav: { contentType: 'audio/wav', demuxer: 'wav' },
  aac: { contentType: 'audio/aac', demuxer: 'aac' },
  mp3: { contentType: 'audio/mpeg', demuxer: 'mp3' },
  jpg: { contentType: 'image/jpeg', demuxer: 'jpeg_pipe' },
  png: { contentType: 'image/png', demuxer: 'png_pipe' },
  webp: { contentType: 'image/webp', demuxer: 'webp_pipe' },
  vtt: { contentType: 'text/vtt', demuxer: null },
} as const satisfies Record<string, { contentType: string; demuxer: Demuxer | null }>;

export function outputFile(name: string, primary: boolean): OutputFile {
  const ext = name.slice(name.lastIndexOf('.') + 1) as keyof typeof OUTPUT_KINDS;
  const kind = OUTPUT_KINDS[ext];
  return { name, primary, contentType: kind.contentType, demuxer: kind.demuxer };
}

/** `out/` emptied (a retried job may have left part of its outputs) and ready. */
export async function freshOutDir(ctx: EngineContext): Promise<void> {
  const dir = join(ctx.dir, OUT_DIR);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
}

/** Hashes and probes what a job wrote. */
export async function describeOutputs(
  ctx: EngineContext,
  files: OutputFile[],
): Promise<JobOutput[]> {
  const outputs: JobOutput[] = [];
  for (const file of files) {
    const path = join(ctx.dir, OUT_DIR, file.name);
    const [{ size }, sha256, probe] = await Promise.all([
      stat(path),
      sha256Of(path),
      file.demuxer ? probeOutput(ctx, `${OUT_DIR}/${file.name}`, file.demuxer) : null,
    ]);
    outputs.push({
      name: file.name,
      contentType: file.contentType,
      primary: file.primary,
      probe,
      sha256,
      bytes: size,
    });
  }
  return outputs;
}

function sha256Of(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

interface RawProbe {
  format?: { format_name?: string; duration?: string; bit_rate?: string };
  streams?: Array<Record<string, unknown>>;
}

/** The facts of an output: container, duration, and per stream its codec and size or sound. */
export async function probeOutput(
  ctx: EngineContext,
  name: string,
  demuxer: Demuxer,
): Promise<Record<string, unknown>> {
  const stdout = await runTool({
    command: ctx.tools.ffprobe,
    args: [
      '-v',
      'error',
      '-protocol_whitelist',
      'file,pipe',
      '-f',
      demuxer,
      '-show_format',
      '-show_streams',
      '-of',
      'json',
      `./${name}`,
    ],
    cwd: ctx.dir,
    signal: ctx.signal,
    cpuClass: cpuClassOf(ctx),
    label: 'ffprobe (output)',
    stdoutLimit: 1024 * 1024,
  });
  const raw = JSON.parse(stdout) as RawProbe;
  const num = (v: unknown): number | null => {
    const n = Number(v);
    return v !== undefined && Number.isFinite(n) ? n : null;
  };
  return {
    format: raw.format?.format_name ?? null,
    durationS: num(raw.format?.duration),
    bitRate: num(raw.format?.bit_rate),
    streams: (raw.streams ?? []).map((s) =>
      s.codec_type === 'video'
        ? {
            type: 'video',
            codec: s.codec_name,
            width: s.width,
            height: s.height,
            pixFmt: s.pix_fmt,
            frameRate: s.avg_frame_rate,
            frames: num(s.nb_frames),
            durationS: num(s.duration),
          }
        : {
            type: s.codec_type,
            codec: s.codec_name,
            sampleRate: num(s.sample_rate),
            channels: s.channels,
            durationS: num(s.duration),
          },
    ),
  };
}
