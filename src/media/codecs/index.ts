import { type AudioCodec, videoCodecFamily } from '../../protocol/codecs';
import type { AudioPacketCheck, VideoChunkCheck } from '../../stream/chunk-gate';
import { createH264Checker } from './h264';
import { createOpusChecker, parseOpusHead } from './opus';
import { createVp8Checker } from './vp8';
import { createVp9Checker } from './vp9';

/** A session's video as `open` declared it (description decoded), and the channel's limits. */
export interface VideoMedia {
  codec: string;
  description?: Uint8Array | null;
  width: number;
  height: number;
  maxWidth: number;
  maxHeight: number;
}

/**
 * The checker of a compressed video session's chunks, by codec family. Throws an Error saying
 * what is wrong with the configuration (a JPEG or unknown codec, an avcC that is missing or does
 * not match the codec string and size, a size over the limit): `open` answers it as a validation
 * error.
 */
export function createVideoChunkChecker(media: VideoMedia): VideoChunkCheck {
  const family = videoCodecFamily(media.codec);
  switch (family) {
    case null:
      throw new Error(`video codec ${media.codec} is not one framegate records`);
    case 'jpeg':
      throw new Error('jpeg sessions send images, which have no chunk checker');
    case 'avc':
      if (!media.description || media.description.length === 0) {
        throw new Error(`video codec ${media.codec} needs video.description (the avcC)`);
      }
      return createH264Checker({ ...media, description: media.description });
    case 'vp8':
      return createVp8Checker(media);
    case 'vp9':
      return createVp9Checker(media);
  }
}

/** The checker of a session's audio packets: null for PCM, which has nothing to check. */
export function createAudioPacketChecker(
  codec: AudioCodec,
  description?: Uint8Array | null,
): AudioPacketCheck | null {
  switch (codec) {
    case 'pcm':
      return null;
    case 'opus':
      return createOpusChecker(description ? parseOpusHead(description) : null);
  }
}
