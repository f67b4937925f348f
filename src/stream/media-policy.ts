import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { createAudioPacketChecker, createVideoChunkChecker } from '../media/codecs';
import { isCompressed, videoCodecFamily, type VideoCodecFamily } from '../protocol/codecs';
import type { Opened } from '../protocol/open-session.schema';
import type { AudioSettings, RecordingSettings, VideoSettings } from '../sessions/session.types';
import { type AudioPacketCheck, ChunkGate, type VideoChunkCheck } from './chunk-gate';

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

function checkMedia(video: VideoSettings, audio: AudioSettings | null, policy: MediaPolicy): void {
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

/**
 * The bitstream gate of a compressed session (null for JPEG images): its codec's checker, built
 * from the declared configuration and the limits in force. A configuration that cannot be used (an
 * avcC that does not parse or disagrees with the codec string or the size) refuses the `open`.
 * A resumed session keeps the size it was accepted with, even if the channel's limit fell since.
 */
export function chunkGateFor(
  video: VideoSettings,
  audio: AudioSettings | null,
  media: Opened['media'],
  resumed: { storedVideo: number; highestPts: number } | null,
): ChunkGate | null {
  const codec = video.codec ?? 'jpeg';
  if (!isCompressed(videoCodecFamily(codec) ?? 'jpeg')) {
    return null;
  }
  let videoCheck: VideoChunkCheck;
  let audioCheck: AudioPacketCheck | null;
  try {
    videoCheck = createVideoChunkChecker({
      codec,
      description: video.description ? Buffer.from(video.description, 'base64') : null,
      width: video.width,
      height: video.height,
      maxWidth: resumed ? Math.max(media.video.maxWidth, video.width) : media.video.maxWidth,
      maxHeight: resumed ? Math.max(media.video.maxHeight, video.height) : media.video.maxHeight,
    });
  } catch (err) {
    throw new AppError(ErrorCode.ValidationFailed, `video: ${(err as Error).message}`);
  }
  try {
    audioCheck = createAudioPacketChecker(
      audio?.codec ?? 'pcm',
      audio?.description ? Buffer.from(audio.description, 'base64') : null,
    );
  } catch (err) {
    throw new AppError(ErrorCode.ValidationFailed, `audio: ${(err as Error).message}`);
  }
  return new ChunkGate(
    videoCheck,
    audioCheck,
    media.video.keyframeIntervalMs,
    resumed?.storedVideo ?? 0,
    resumed?.highestPts ?? 0,
  );
}
