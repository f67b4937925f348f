import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Real encoder output for the bitstream specs (src/protocol/annexb, src/media/codecs): the static
 * ffmpeg/ffprobe the installers ship (libx264, libvpx, libvpx-vp9, libopus), whatever else the
 * machine has, so the streams are the same everywhere. Everything goes through pipes.
 */
export const BUNDLED = {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  ffmpeg: (require('@ffmpeg-installer/ffmpeg') as { path: string }).path,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  ffprobe: (require('@ffprobe-installer/ffprobe') as { path: string }).path,
};

/** Runs a tool with `input` on its stdin; resolves with its stdout, rejects with its stderr. */
export function runTool(tool: string, args: string[], input?: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) {
        resolve(Buffer.concat(out));
      } else {
        reject(
          new Error(`${tool} ${args.join(' ')}: exit ${code}: ${Buffer.concat(err).toString()}`),
        );
      }
    });
    // ffprobe may stop reading once it has seen enough; that is not a failure.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** What to encode: a lavfi pattern (`testsrc2`, or `testsrc`, which also takes odd sizes). */
export interface TestVideo {
  width: number;
  height: number;
  frames: number;
  rate?: number;
  pattern?: 'testsrc2' | 'testsrc';
}

/** ffmpeg encoding a lavfi test pattern with `codecArgs`, its output as bytes. */
export function encodeTestVideo(options: TestVideo, codecArgs: string[]): Promise<Buffer> {
  const size = `size=${options.width}x${options.height}:rate=${options.rate ?? 10}`;
  const source = `${options.pattern ?? 'testsrc2'}=${size}`;
  return runTool(BUNDLED.ffmpeg, [
    ...['-hide_banner', '-loglevel', 'error', '-nostdin'],
    ...['-f', 'lavfi', '-i', source, '-frames:v', String(options.frames)],
    ...codecArgs,
    'pipe:1',
  ]);
}

/**
 * H.264 in Annex B from libx264: a key frame every `gop` frames and no others, and no B-frames
 * (as a real-time encoder sends; `extra` may ask for them with `-bf`).
 */
export function encodeH264(
  options: TestVideo & { gop: number },
  extra: string[] = [],
): Promise<Buffer> {
  return encodeTestVideo(options, [
    ...['-c:v', 'libx264', '-g', String(options.gop), '-sc_threshold', '0', '-bf', '0'],
    ...extra,
    ...['-bsf:v', 'h264_mp4toannexb', '-f', 'h264'],
  ]);
}

/**
 * VP8/VP9 frames from libvpx, in IVF. `twoPass` makes libvpx place hidden alt-ref frames (one
 * pass does not, here): VP9 then packs each with the next shown frame into a superframe, VP8 writes
 * it as a frame of its own.
 */
export async function encodeVpx(
  video: TestVideo,
  codecArgs: string[],
  twoPass = false,
): Promise<ReturnType<typeof ivfFrames>> {
  if (!twoPass) {
    return ivfFrames(await encodeTestVideo(video, [...codecArgs, '-f', 'ivf']));
  }
  const dir = mkdtempSync(join(tmpdir(), 'framegate-vpx-'));
  try {
    const log = ['-passlogfile', join(dir, 'pass')];
    await encodeTestVideo(video, [...codecArgs, ...log, '-pass', '1', '-f', 'null']);
    const args = [...codecArgs, ...log, '-pass', '2', '-auto-alt-ref', '1', '-lag-in-frames', '25'];
    return ivfFrames(await encodeTestVideo(video, [...args, '-f', 'ivf']));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One frame of an IVF file (the container libvpx's tools write). */
export interface IvfFrame {
  data: Buffer;
  pts: number;
}

/** The frames of an IVF file: a 32-byte file header, then a 12-byte header before each frame. */
export function ivfFrames(file: Buffer): {
  fourcc: string;
  width: number;
  height: number;
  frames: IvfFrame[];
} {
  if (file.toString('latin1', 0, 4) !== 'DKIF') {
    throw new Error('not an IVF file');
  }
  const headerSize = file.readUInt16LE(6);
  const frames: IvfFrame[] = [];
  for (let at = headerSize; at + 12 <= file.length;) {
    const size = file.readUInt32LE(at);
    const pts = Number(file.readBigUInt64LE(at + 4));
    frames.push({ data: file.subarray(at + 12, at + 12 + size), pts });
    at += 12 + size;
  }
  return {
    fourcc: file.toString('latin1', 8, 12),
    width: file.readUInt16LE(12),
    height: file.readUInt16LE(14),
    frames,
  };
}

/**
 * The packets of an Ogg stream (RFC 3533): each page's segment table gives lacing values, and a
 * packet ends at a value under 255, possibly pages later.
 */
export function oggPackets(file: Buffer): Buffer[] {
  const packets: Buffer[] = [];
  let pending: Buffer[] = [];
  for (let at = 0; at + 27 <= file.length;) {
    if (file.toString('latin1', at, at + 4) !== 'OggS') {
      throw new Error(`no Ogg page at byte ${at}`);
    }
    const segments = file[at + 26];
    let body = at + 27 + segments;
    for (let i = 0; i < segments; i++) {
      const lacing = file[at + 27 + i];
      pending.push(file.subarray(body, body + lacing));
      body += lacing;
      if (lacing < 255) {
        packets.push(Buffer.concat(pending));
        pending = [];
      }
    }
    at = body;
  }
  return packets;
}

/** What ffprobe says of each packet of a stream read from stdin: its size and key flag. */
export async function probePackets(
  format: string,
  input: Uint8Array,
): Promise<Array<{ size: number; key: boolean }>> {
  const json = await runTool(
    BUNDLED.ffprobe,
    [
      '-v',
      'error',
      '-f',
      format,
      '-show_packets',
      '-show_entries',
      'packet=size,flags',
      '-of',
      'json',
      '-i',
      'pipe:0',
    ],
    input,
  );
  const parsed = JSON.parse(json.toString()) as { packets: Array<{ size: string; flags: string }> };
  return parsed.packets.map((p) => ({ size: Number(p.size), key: p.flags.startsWith('K') }));
}
