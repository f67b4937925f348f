import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ALL_FORMATS, BufferSource, EncodedPacketSink, Input } from 'mediabunny';
import { locateTool } from '../../src/media/ffmpeg-locator';

/** One encoded chunk as a WebCodecs encoder emits it, and whether it is a key frame. */
export interface EncodedChunk {
  data: Buffer;
  key: boolean;
}

export interface EncodedVideo {
  /** WebCodecs codec string (`avc1.42c01e`, `vp8`, `vp09.00.10.08`). */
  codec: string;
  /** Base64 decoder configuration (the avcC for H.264), as `open` takes it; null when none. */
  description: string | null;
  chunks: EncodedChunk[];
}

export interface EncodedAudio {
  codec: 'opus';
  /** Base64 OpusHead. */
  description: string | null;
  packets: Buffer[];
}

const ENCODERS = {
  h264: ['-c:v', 'libx264', '-sc_threshold', '0', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-f', 'mp4'],
  vp8: ['-c:v', 'libvpx', '-b:v', '300k', '-f', 'webm'],
  vp9: ['-c:v', 'libvpx-vp9', '-b:v', '300k', '-pix_fmt', 'yuv420p', '-f', 'webm'],
} as const;

/**
 * Real compressed video, made by the bundled ffmpeg and taken apart with mediabunny into the
 * chunks and decoder configuration a browser's `VideoEncoder` gives: H.264 as AVCC with its avcC,
 * VP8 and VP9 frames. No B-frames (a real-time encoder sends frames in capture order), and a key
 * frame every `gop` frames.
 */
export async function encodedVideo(
  dir: string,
  codec: keyof typeof ENCODERS,
  o: { width: number; height: number; frames: number; gop?: number; pattern?: string },
): Promise<EncodedVideo> {
  const out = join(
    dir,
    `${codec}-${o.width}x${o.height}-${o.frames}.${codec === 'h264' ? 'mp4' : 'webm'}`,
  );
  execFileSync(locateTool('ffmpeg', undefined).path, [
    '-v',
    'error',
    '-y',
    '-f',
    'lavfi',
    '-i',
    `${o.pattern ?? 'testsrc2'}=size=${o.width}x${o.height}:rate=10`,
    '-frames:v',
    String(o.frames),
    // Key frames exactly every `gop` frames (no scene cuts), as a real-time encoder does.
    '-g',
    String(o.gop ?? 10),
    '-keyint_min',
    String(o.gop ?? 10),
    '-bf',
    '0',
    ...ENCODERS[codec],
    out,
  ]);
  const input = new Input({ source: new BufferSource(readFileSync(out)), formats: ALL_FORMATS });
  const track = await input.getPrimaryVideoTrack();
  const config = await track?.getDecoderConfig();
  if (!track || !config) {
    throw new Error(`${out} has no video track`);
  }
  const chunks: EncodedChunk[] = [];
  for await (const packet of new EncodedPacketSink(track).packets()) {
    chunks.push({ data: Buffer.from(packet.data), key: packet.type === 'key' });
  }
  return {
    codec: codec === 'vp8' ? 'vp8' : codec === 'vp9' ? 'vp09.00.10.08' : config.codec,
    description: config.description
      ? Buffer.from(config.description as ArrayBuffer).toString('base64')
      : null,
    chunks,
  };
}

/** `seconds` of Opus (20 ms packets at 48 kHz), as `AudioEncoder` emits it. */
export async function encodedOpus(
  dir: string,
  seconds: number,
  channels: 1 | 2 = 1,
): Promise<EncodedAudio> {
  const out = join(dir, `opus-${seconds}-${channels}.webm`);
  execFileSync(locateTool('ffmpeg', undefined).path, [
    '-v',
    'error',
    '-y',
    '-f',
    'lavfi',
    '-i',
    `sine=frequency=440:sample_rate=48000:duration=${seconds}`,
    '-ac',
    String(channels),
    '-c:a',
    'libopus',
    '-frame_duration',
    '20',
    '-f',
    'webm',
    out,
  ]);
  const input = new Input({ source: new BufferSource(readFileSync(out)), formats: ALL_FORMATS });
  const track = await input.getPrimaryAudioTrack();
  const config = await track?.getDecoderConfig();
  if (!track || !config) {
    throw new Error(`${out} has no audio track`);
  }
  const packets: Buffer[] = [];
  for await (const packet of new EncodedPacketSink(track).packets()) {
    packets.push(Buffer.from(packet.data));
  }
  return {
    codec: 'opus',
    description: config.description
      ? Buffer.from(config.description as ArrayBuffer).toString('base64')
      : null,
    packets,
  };
}

/** The video packets of a recording, in order: to prove chunks were muxed as sent. */
export async function recordedVideoPackets(path: string): Promise<EncodedChunk[]> {
  const input = new Input({ source: new BufferSource(readFileSync(path)), formats: ALL_FORMATS });
  const track = await input.getPrimaryVideoTrack();
  if (!track) {
    throw new Error(`${path} has no video track`);
  }
  const packets: EncodedChunk[] = [];
  for await (const packet of new EncodedPacketSink(track).packets()) {
    packets.push({ data: Buffer.from(packet.data), key: packet.type === 'key' });
  }
  return packets;
}

/** The SPS and PPS NAL units of a base64 avcC (ISO/IEC 14496-15 §5.3.3.1). */
export function avcCParameterSets(description: string): { sps: Buffer[]; pps: Buffer[] } {
  const b = Buffer.from(description, 'base64');
  let at = 5;
  const read = (count: number): Buffer[] =>
    Array.from({ length: count }, () => {
      const length = b.readUInt16BE(at);
      const nal = b.subarray(at + 2, at + 2 + length);
      at += 2 + length;
      return nal;
    });
  const sps = read(b[at++] & 0x1f);
  const pps = read(b[at++]);
  return { sps, pps };
}

/** NAL units in AVCC form: each behind its 4-byte big-endian length. */
export function avcc(...nals: Buffer[]): Buffer {
  return Buffer.concat(
    nals.flatMap((nal) => {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(nal.length);
      return [length, nal];
    }),
  );
}
