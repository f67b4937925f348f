import { AudioEncoderProcess } from './audio-encoder';
import { LiveMp4Writer, type LiveMp4Options } from './mp4-writer';
import { VideoEncoderProcess } from './video-encoder';

/** What a recorder needs of its MP4 muxer. */
export type Mp4Sink = Pick<
  LiveMp4Writer,
  'addVideo' | 'addAudio' | 'addCues' | 'finalize' | 'cancel'
>;

/** What a recorder needs of an ffmpeg encoder process. */
type EncoderProcess = Pick<
  VideoEncoderProcess,
  'write' | 'drained' | 'end' | 'exited' | 'setCpuClass' | 'kill'
>;
export type VideoEncoder = EncoderProcess & Pick<VideoEncoderProcess, 'start'>;
export type AudioEncoder = EncoderProcess & Pick<AudioEncoderProcess, 'start'>;

/**
 * The side effects of a recorder (ffmpeg processes, the MP4 file) behind one factory, so the
 * recorder reads as logic and a test can hand one session an encoder or muxer that fails.
 */
export interface RecorderMedia {
  createWriter(outputPath: string, options: LiveMp4Options): Promise<Mp4Sink>;
  /** `outputPath` names the recording the encoder is for. */
  createVideoEncoder(ffmpegPath: string, outputPath: string): VideoEncoder;
  createAudioEncoder(ffmpegPath: string, outputPath: string): AudioEncoder;
}

/** The real thing: ffmpeg child processes and mediabunny writing the file. */
export const FFMPEG_RECORDER_MEDIA: RecorderMedia = {
  createWriter: (path, options) => LiveMp4Writer.create(path, options),
  createVideoEncoder: (ffmpegPath) => new VideoEncoderProcess(ffmpegPath),
  createAudioEncoder: (ffmpegPath) => new AudioEncoderProcess(ffmpegPath),
};
