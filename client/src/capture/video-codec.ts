import { videoCodecFamily, type VideoCodecFamily } from '../../../src/protocol/codecs.js';

/**
 * The video codec a capture asks for: `auto` takes H.264 where the browser can encode it, else
 * VP9, else JPEG images; the others insist on one codec (JPEG when the browser cannot encode it).
 */
export type VideoCodecChoice = 'auto' | 'h264' | 'vp9' | 'vp8' | 'jpeg';

export const VIDEO_CODEC_CHOICES: readonly VideoCodecChoice[] = [
  'auto',
  'h264',
  'vp9',
  'vp8',
  'jpeg',
];

/** Bits per pixel per frame of the default bitrate: a clear picture for a talking head. */
const DEFAULT_BITS_PER_PIXEL = 0.1;
/** Below this many bits per pixel per frame, VP8/VP9 look better at a smaller size. */
const MIN_BITS_PER_PIXEL = 0.05;
/** The sizes VP8/VP9 may step down to, as a share of the declared width and height. */
const SCALES = [1, 0.75, 0.5] as const;
/** No encoder is asked for less than this. */
export const MIN_BITRATE = 50_000;
/** Share of the channel's bandwidth quota (`maxKbps`) the video may take; headers and acks. */
const QUOTA_SHARE = 0.8;

/** H.264 level (hex, as in `avc1.PPCCLL`) for a coded size: macroblocks per frame, H.264 table A-1. */
function avcLevel(width: number, height: number): string {
  const macroblocks = Math.ceil(width / 16) * Math.ceil(height / 16);
  if (macroblocks <= 1620) {
    return '1e'; // 3.0: 720×576
  }
  if (macroblocks <= 3600) {
    return '1f'; // 3.1: 1280×720
  }
  if (macroblocks <= 8192) {
    return '28'; // 4.0: 2048×1024
  }
  return macroblocks <= 22_080 ? '32' : '33'; // 5.0, 5.1
}

/** VP9 level (as in `vp09.PP.LL.DD`) for a picture size: the VP9 levels' largest picture. */
function vp9Level(width: number, height: number): string {
  const pixels = width * height;
  const levels: Array<[number, string]> = [
    [36_864, '10'],
    [73_728, '11'],
    [122_880, '20'],
    [245_760, '21'],
    [552_960, '30'],
    [983_040, '31'],
    [2_228_224, '40'],
    [8_912_896, '50'],
  ];
  return levels.find(([max]) => pixels <= max)?.[1] ?? '60';
}

/**
 * The codec strings to try for a choice, in order of preference: H.264 Baseline (what every
 * hardware encoder and OpenH264 make), then Constrained Baseline and Main; VP9 profile 0, 8-bit.
 * `jpeg` tries none. The level fits the size.
 */
export function codecCandidates(choice: VideoCodecChoice, width: number, height: number): string[] {
  const level = avcLevel(width, height);
  const h264 = [`avc1.4200${level}`, `avc1.42e0${level}`, `avc1.4d00${level}`];
  const vp9 = [`vp09.00.${vp9Level(width, height)}.08`];
  switch (choice) {
    case 'auto':
      return [...h264, ...vp9];
    case 'h264':
      return h264;
    case 'vp9':
      return vp9;
    case 'vp8':
      return ['vp8'];
    case 'jpeg':
      return [];
  }
}

/** The codec family of a codec string in force (`opened.media.video.codec`); JPEG if unknown. */
export function familyOf(codec: string | undefined): VideoCodecFamily {
  return videoCodecFamily(codec ?? 'jpeg') ?? 'jpeg';
}

/** The bitrate a capture aims at when not told: 0.1 bit per pixel per frame, 100 kbit/s at least. */
export function defaultBitrate(width: number, height: number, fps: number): number {
  return Math.max(100_000, Math.round(width * height * Math.max(fps, 1) * DEFAULT_BITS_PER_PIXEL));
}

/** What an encoder is asked for after a flow adaptation. */
export interface EncoderRate {
  /** bit/s */
  bitrate: number;
  /** Coded size: the declared one for H.264, maybe smaller for VP8/VP9. */
  width: number;
  height: number;
}

export interface EncoderRateInput {
  family: VideoCodecFamily;
  /** The bitrate wanted when nothing holds the capture back. */
  targetBitrate: number;
  /** The adaptive capture's level, 0–1: the share of `targetBitrate` to spend. */
  quality: number;
  /** The frame rate now, and the one `targetBitrate` was meant for. */
  fps: number;
  targetFps: number;
  /** The size declared in `open`. */
  width: number;
  height: number;
  /** The channel's limits (`opened.media.video`); `maxKbps` covers audio and video together. */
  maxWidth: number;
  maxHeight: number;
  maxKbps: number;
  /** bit/s the other tracks take (PCM audio: rate × channels × 16). */
  reservedBitrate: number;
}

/**
 * The bitrate and coded size for the adaptive capture's level. Bits per frame stay as the level
 * says when the frame rate drops (an encoder keeps its bits per second, so fewer frames would each
 * get more, and a bandwidth quota would not be relieved); the channel's quota caps it. VP8 and VP9
 * take the largest size at which a frame still gets `MIN_BITS_PER_PIXEL` (a smaller picture looks
 * better than a starved large one), within the channel's size; H.264 keeps its declared size,
 * which its avcC describes.
 */
export function encoderRate(input: EncoderRateInput): EncoderRate {
  const fpsShare = input.targetFps > 0 ? Math.min(1, input.fps / input.targetFps) : 1;
  const quota = input.maxKbps * 1000 * QUOTA_SHARE - input.reservedBitrate;
  const bitrate = Math.round(
    Math.max(MIN_BITRATE, Math.min(input.targetBitrate * input.quality * fpsShare, quota)),
  );
  if (input.family !== 'vp8' && input.family !== 'vp9') {
    return { bitrate, width: input.width, height: input.height };
  }
  const fit = Math.min(1, input.maxWidth / input.width, input.maxHeight / input.height);
  const fps = Math.max(input.fps, 1);
  const scale =
    SCALES.find(
      (s) => s <= fit && bitrate / (fps * input.width * s * input.height * s) >= MIN_BITS_PER_PIXEL,
    ) ?? Math.min(fit, SCALES[SCALES.length - 1]);
  return { bitrate, width: even(input.width * scale), height: even(input.height * scale) };
}

/** Even (4:2:0 chroma needs it) and at least 16, as the protocol's sizes. */
export function even(n: number): number {
  return Math.max(16, Math.floor(n / 2) * 2);
}

/** Base64 of bytes, in browsers and Node alike (`description` fields of `open`). */
export function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) {
    binary += String.fromCharCode(b);
  }
  return btoa(binary);
}

/** Bytes of base64 (a `description` of `open`, kept in the outbox's settings). */
export function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** Whether two byte strings (decoder configurations) are equal; two nulls are. */
export function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null || a.length !== b.length) {
    return a === b;
  }
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      return false;
    }
  }
  return true;
}
