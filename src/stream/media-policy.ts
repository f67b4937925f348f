import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { videoCodecFamily, type VideoCodecFamily } from '../protocol/codecs';
import type { Opened } from '../protocol/open-session.schema';
import type { AudioSettings, RecordingSettings, VideoSettings } from '../sessions/session.types';

/** What a channel accepts of a session's media (env defaults, or its channel_quotas row). */
export interface MediaPolicy {
  videoCodecs: readonly VideoCodecFamily[];
  maxWidth: number;
  maxHeight: number;
  /** The channel's bandwidth quota, kbit/s. */
  maxKbps: number;
  keyframeIntervalMs: number;
}

/**
 * The `media` of `opened` for a session declaring `video` and `audio` on a channel with `policy`;
 * refuses (`codec_not_allowed`, the connection stays open for another `open`) a codec or capture
 * size the channel does not accept, naming what it does accept.
 */
export function negotiateMedia(
  video: VideoSettings,
  audio: AudioSettings | null,
  recording: RecordingSettings | null,
  policy: MediaPolicy,
): Opened['media'] {
  checkMedia(video, audio, policy);
  if (recording !== null && (video.codec ?? 'jpeg') !== 'jpeg') {
    // Nothing is decoded or scaled: the recording is the client's chunks, at their coded size.
    throw new AppError(
      ErrorCode.ValidationFailed,
      'recording: compressed video is recorded as sent, at its coded size; leave recording out',
    );
  }
  return describeMedia(video, audio, policy);
}

/**
 * The `media` of `opened` for a session accepted earlier (a resume): the channel's current
 * limits, for the codec it opened with, even if the channel no longer accepts that codec.
 */
export function describeMedia(
  video: VideoSettings,
  audio: AudioSettings | null,
  policy: MediaPolicy,
): Opened['media'] {
  return {
    video: {
      codec: video.codec ?? 'jpeg',
      maxWidth: policy.maxWidth,
      maxHeight: policy.maxHeight,
      maxKbps: policy.maxKbps,
      keyframeIntervalMs: policy.keyframeIntervalMs,
    },
    audio: audio ? { codec: audio.codec ?? 'pcm' } : null,
  };
}

function checkMedia(
  video: VideoSettings,
  audio: AudioSettings | null,
  policy: MediaPolicy,
): void {
  const codec = video.codec ?? 'jpeg';
  const family = videoCodecFamily(codec);
  const accepted = policy.videoCodecs.join(', ');
  if (family === null || !policy.videoCodecs.includes(family)) {
    throw new AppError(
      ErrorCode.CodecNotAllowed,
      `video codec ${codec} is not accepted on this channel; accepted: ${accepted}`,
    );
  }
  if (family !== 'jpeg' && (video.width > policy.maxWidth || video.height > policy.maxHeight)) {
    throw new AppError(
      ErrorCode.CodecNotAllowed,
      `${video.width}x${video.height} is over this channel's limit of ` +
        `${policy.maxWidth}x${policy.maxHeight}`,
    );
  }
  const audioCodec = audio ? (audio.codec ?? 'pcm') : null;
  if (audioCodec === 'opus' && family === 'jpeg') {
    throw new AppError(
      ErrorCode.CodecNotAllowed,
      'opus audio needs compressed video (avc1, vp8 or vp09); with jpeg, send PCM',
    );
  }
}
