import { AdtsSplitter, type AdtsFrameInfo } from './adts-stream';
import { PipedFfmpegProcess } from './video-encoder';

/** AAC bit rate: plenty for speech and ambient sound from a camera microphone. */
const AAC_BITRATE = '64k';

export interface AudioEncoderOptions {
  sampleRate: number;
  channels: number;
  /** One call per AAC frame (1024 samples per channel), raw: the ADTS header is stripped. */
  onFrame: (frame: Uint8Array, info: AdtsFrameInfo) => void;
}

/**
 * One session's AAC encoder: PCM s16le in on stdin, ADTS out on stdout, split into raw frames.
 * The first frame carries the encoder's priming (1024 samples), so the encoded track runs one
 * frame longer than the PCM that went in.
 */
export class AudioEncoderProcess extends PipedFfmpegProcess {
  constructor(ffmpegPath: string) {
    super(ffmpegPath, 'audio encoder');
  }

  start(options: AudioEncoderOptions): void {
    const splitter = new AdtsSplitter(options.onFrame);
    this.run(
      [
        '-hide_banner',
        '-loglevel',
        'error',
        // Without these ffmpeg buffers seconds of input to probe it before encoding anything.
        '-probesize',
        '32',
        '-analyzeduration',
        '0',
        '-f',
        's16le',
        '-ar',
        String(options.sampleRate),
        '-ac',
        String(options.channels),
      ],
      ['-c:a', 'aac', '-b:a', AAC_BITRATE, '-f', 'adts'],
      {
        push: (chunk) => splitter.push(chunk),
        end: () => {
          if (splitter.pendingBytes > 0) {
            throw new Error(`AAC stream ended inside a frame (${splitter.pendingBytes} bytes)`);
          }
        },
      },
    );
  }
}
