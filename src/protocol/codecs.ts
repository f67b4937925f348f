/**
 * The media codecs a session may declare in `open` (docs/protocol.md, "Compressed video"). Shared
 * by the server and the SDK, so both read a codec string the same way.
 */

/** Video codec families: `jpeg` images, or chunks of a video encoder. */
export type VideoCodecFamily = 'jpeg' | 'avc' | 'vp8' | 'vp9';
export const VIDEO_CODEC_FAMILIES: readonly VideoCodecFamily[] = ['jpeg', 'avc', 'vp8', 'vp9'];

/** Audio codecs: raw PCM s16le (encoded to AAC by the server) or Opus packets, stored as sent. */
export const AUDIO_CODECS = ['pcm', 'opus'] as const;
export type AudioCodec = (typeof AUDIO_CODECS)[number];

/**
 * RFC 6381 / WebCodecs codec strings: `avc1.PPCCLL` (profile, constraints, level in hex), `vp8`,
 * `vp09.PP.LL.DD[.CC.cp.tc.mc.FF]` (profile, level, bit depth, then optional colour fields).
 * `avc3` (parameter sets only in band) is not accepted: the recording's avcC comes from
 * `description`.
 */
const CODEC_PATTERNS: ReadonlyArray<[VideoCodecFamily, RegExp]> = [
  ['jpeg', /^jpeg$/],
  ['avc', /^avc1\.[0-9a-fA-F]{6}$/],
  ['vp8', /^vp8$/],
  ['vp9', /^vp09\.\d\d\.\d\d\.\d\d(\.\d\d){0,5}$/],
];

/** The family of a codec string, or null when it is not one framegate records. */
export function videoCodecFamily(codec: string): VideoCodecFamily | null {
  for (const [family, pattern] of CODEC_PATTERNS) {
    if (pattern.test(codec)) {
      return family;
    }
  }
  return null;
}

/** Whether the family needs `video.description` (its decoder configuration) in `open`. */
export function needsDescription(family: VideoCodecFamily): boolean {
  return family === 'avc';
}

/** Whether chunks of this family are compressed video (header flag bit 0 marks key frames). */
export function isCompressed(family: VideoCodecFamily): boolean {
  return family !== 'jpeg';
}

/** Base64 (standard alphabet, padded or not), as `description` fields are sent. */
export const BASE64_PATTERN = /^[A-Za-z0-9+/]*={0,2}$/;
