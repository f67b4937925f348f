import {
  FFMPEG_RECORDER_MEDIA,
  type Mp4Sink,
  type RecorderMedia,
  type VideoEncoder,
} from '../../src/media/recorder-media';

/** Packets a faulty session's muxer takes before it fails. */
export const MUXER_FAILS_AFTER = 4;

export type Fault = 'encoder_and_muxer' | 'disk_full_once' | 'disk_full';

/**
 * Fault-injecting doubles of the recorder's media: the real ffmpeg and MP4 writer for every
 * session but one.
 * - `encoder_and_muxer`: that session's muxer rejects every packet after MUXER_FAILS_AFTER, and
 *   from then on its encoder's ffmpeg is killed at the next frame it is given (restarts too): the
 *   muxer fails first, while the encoder still runs, and then the encoder.
 * - `disk_full_once`: that session's first MP4 hits ENOSPC after MUXER_FAILS_AFTER packets, as on a
 *   disk that filled up and then got space back; later writers (the rebuild) are real.
 * - `disk_full`: every MP4 of that session hits ENOSPC after MUXER_FAILS_AFTER packets.
 */
export function faultyMedia(fault: Fault, sessionId: string): RecorderMedia {
  const real = FFMPEG_RECORDER_MEDIA;
  const targets = (path: string) => path.includes(sessionId);
  let diskFullDone = false;
  let muxerFailed = false;
  return {
    async createWriter(path, options): Promise<Mp4Sink> {
      const writer = await real.createWriter(path, options);
      if (!targets(path) || (fault === 'disk_full_once' && diskFullDone)) {
        return writer;
      }
      diskFullDone = true;
      const failure = () => {
        muxerFailed = true;
        return fault !== 'encoder_and_muxer'
          ? Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
          : new Error('injected muxer failure');
      };
      let packets = 0;
      return {
        addVideo: (...args) =>
          ++packets > MUXER_FAILS_AFTER ? Promise.reject(failure()) : writer.addVideo(...args),
        addAudio: (...args) => writer.addAudio(...args),
        addCues: (...args) => writer.addCues(...args),
        finalize: () => writer.finalize(),
        cancel: () => writer.cancel(),
      };
    },
    createVideoEncoder(ffmpegPath, outputPath): VideoEncoder {
      const encoder = real.createVideoEncoder(ffmpegPath, outputPath);
      if (fault !== 'encoder_and_muxer' || !targets(outputPath)) {
        return encoder;
      }
      const write = encoder.write.bind(encoder);
      return Object.assign(encoder, {
        write: (data: Buffer) => {
          if (muxerFailed) {
            encoder.kill();
          }
          return write(data);
        },
      });
    },
    createAudioEncoder: (ffmpegPath, outputPath) => real.createAudioEncoder(ffmpegPath, outputPath),
  };
}
