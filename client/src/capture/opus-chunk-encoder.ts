import { Emitter } from '../emitter.js';
import type { CapturedAudio } from './microphone-capture.js';
import { toBase64 } from './video-codec.js';

/** One Opus packet, as the session sends it (one track 2 message). */
export interface EncodedAudioChunkData {
  data: Uint8Array;
  /** Epoch ms of its first sample (its EncodedAudioChunk's timestamp). */
  capturedAt: number;
}

export interface OpusChunkEncoderEvents {
  chunk: (chunk: EncodedAudioChunkData) => void;
  /** A PCM chunk was not encoded: the encoder was behind (or recovering). */
  dropped: () => void;
  /** The encoder failed and was configured anew: the audio goes on after a gap. */
  recovered: (why: string) => void;
  /** The encoder failed again and again: no more packets come. */
  failed: (why: string) => void;
}

/** The bitrate asked of the encoder, bit/s: speech and room sound, a 24th of 48 kHz PCM's. */
export const OPUS_BITRATE = 32_000;
/**
 * The length of a packet, µs. Each packet is one message, and messages count against the
 * channel's frame-rate quota (30 a second by default): 20 ms packets alone would take 50.
 */
const OPUS_FRAME_US = 60_000;
/** PCM chunks (100 ms each by default) that may wait inside the encoder; more are dropped. */
const MAX_ENCODE_QUEUE = 3;
/** Errors in a row (no packet in between) after which the encoder is given up. */
const MAX_CONSECUTIVE_ERRORS = 3;
/**
 * A chunk captured this much before or after the time the encoder's own clock gives it follows a
 * gap (a dropped chunk, a paused capture) or the sound card's clock drifted from the page's: the
 * encoder is flushed first, which makes it take the new chunk's timestamp.
 */
const MAX_SKEW_MS = 20;

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * A WebCodecs `AudioEncoder` turning the microphone's PCM s16 chunks into Opus packets for a
 * session. Chromium 150 stamps its packets from the first input's timestamp on by counting
 * samples, ignoring later timestamps (measured): after a gap in the input, or once the count
 * drifts from the capture times, it is flushed so that the packets after keep their capture time.
 */
export class OpusChunkEncoder extends Emitter<OpusChunkEncoderEvents> {
  readonly bitrate = OPUS_BITRATE;
  /** Packets (messages) a second: what the audio takes of the server's `maxFps`. */
  readonly packetsPerSecond = 1_000_000 / OPUS_FRAME_US;
  private encoder: AudioEncoder;
  /**
   * Epoch ms the encoder stamps the next chunk with: the timestamp it last took plus the samples
   * since; null before its first chunk.
   */
  private nextAt: number | null = null;
  private errors = 0;
  private closed = false;

  private constructor(
    private readonly config: AudioEncoderConfig,
    /** The OpusHead the encoder gives (`metadata.decoderConfig.description`). */
    readonly description: Uint8Array | null,
  ) {
    super();
    this.encoder = this.newEncoder();
  }

  /**
   * An encoder for `sampleRate` and `channels` when the browser encodes Opus at that rate
   * (`isConfigSupported`), else null: the capture sends PCM. A throwaway encoder is fed a packet
   * of silence first, to learn the OpusHead before `open`.
   */
  static async create(sampleRate: number, channels: 1 | 2): Promise<OpusChunkEncoder | null> {
    if (typeof AudioEncoder === 'undefined') {
      return null;
    }
    const config: AudioEncoderConfig = {
      codec: 'opus',
      sampleRate,
      numberOfChannels: channels,
      bitrate: OPUS_BITRATE,
      opus: { frameDuration: OPUS_FRAME_US },
    };
    try {
      if ((await AudioEncoder.isConfigSupported(config)).supported !== true) {
        return null;
      }
      return new OpusChunkEncoder(config, await opusHead(config));
    } catch {
      return null;
    }
  }

  /** The `audio` fields of `open` for this encoder. */
  openSettings(): {
    sampleRate: number;
    channels: 1 | 2;
    codec: 'opus';
    description?: string;
  } {
    return {
      sampleRate: this.config.sampleRate,
      channels: this.config.numberOfChannels as 1 | 2,
      codec: 'opus',
      ...(this.description ? { description: toBase64(this.description) } : {}),
    };
  }

  /** Chunks waiting in the encoder: the next one would be dropped. */
  get busy(): boolean {
    return this.closed || this.encoder.encodeQueueSize >= MAX_ENCODE_QUEUE;
  }

  /** Encodes a PCM s16 chunk; drops it when the encoder is behind. True when handed over. */
  encode({ pcm, capturedAt }: CapturedAudio): boolean {
    if (this.busy || this.encoder.state !== 'configured') {
      this.emit('dropped');
      return false;
    }
    const channels = this.config.numberOfChannels;
    const frames = pcm.byteLength / (2 * channels);
    if (this.nextAt === null || Math.abs(capturedAt - this.nextAt) > MAX_SKEW_MS) {
      if (this.nextAt !== null) {
        this.encoder.flush().catch(() => undefined);
      }
      this.nextAt = capturedAt;
    }
    this.nextAt += (frames / this.config.sampleRate) * 1000;
    let data: AudioData;
    try {
      data = new AudioData({
        format: 's16',
        sampleRate: this.config.sampleRate,
        numberOfChannels: channels,
        numberOfFrames: frames,
        timestamp: Math.round(capturedAt * 1000),
        data: pcm,
      });
    } catch (err) {
      this.onError(err);
      return false;
    }
    try {
      this.encoder.encode(data);
    } catch (err) {
      this.onError(err);
      return false;
    } finally {
      data.close();
    }
    return true;
  }

  /** Delivers every packet of the chunks handed over so far (the last one padded). */
  async flush(): Promise<void> {
    if (!this.closed && this.encoder.state === 'configured') {
      await this.encoder.flush().catch(() => undefined);
    }
  }

  close(): void {
    this.closed = true;
    if (this.encoder.state !== 'closed') {
      this.encoder.close();
    }
  }

  private newEncoder(): AudioEncoder {
    // A new encoder stamps from its first input on: no flush needed after it.
    this.nextAt = null;
    const encoder = new AudioEncoder({
      output: (chunk) => {
        if (encoder !== this.encoder || this.closed) {
          return;
        }
        this.errors = 0;
        const data = new Uint8Array(chunk.byteLength);
        chunk.copyTo(data);
        this.emit('chunk', { data, capturedAt: chunk.timestamp / 1000 });
      },
      error: (err) => {
        if (encoder === this.encoder) {
          this.onError(err);
        }
      },
    });
    encoder.configure(this.config);
    return encoder;
  }

  /** An errored AudioEncoder is closed for good: a new one, configured alike, goes on. */
  private onError(err: unknown): void {
    if (this.closed) {
      return;
    }
    if (++this.errors > MAX_CONSECUTIVE_ERRORS) {
      this.close();
      this.emit('failed', message(err));
      return;
    }
    if (this.encoder.state !== 'closed') {
      this.encoder.close();
    }
    try {
      this.encoder = this.newEncoder();
    } catch (e) {
      this.close();
      this.emit('failed', message(e));
      return;
    }
    this.emit('recovered', message(err));
  }
}

/** The OpusHead an encoder with `config` gives: one packet of silence through a throwaway one. */
async function opusHead(config: AudioEncoderConfig): Promise<Uint8Array | null> {
  let head: Uint8Array | null = null;
  const encoder = new AudioEncoder({
    output: (_chunk, metadata) => {
      const description = metadata?.decoderConfig?.description;
      if (description && !head) {
        head = ArrayBuffer.isView(description)
          ? new Uint8Array(
              description.buffer,
              description.byteOffset,
              description.byteLength,
            ).slice()
          : new Uint8Array(description).slice();
      }
    },
    error: () => undefined,
  });
  try {
    encoder.configure(config);
    const frames = Math.round((config.sampleRate * OPUS_FRAME_US) / 1_000_000);
    const silence = new AudioData({
      format: 's16',
      sampleRate: config.sampleRate,
      numberOfChannels: config.numberOfChannels,
      numberOfFrames: frames,
      timestamp: 0,
      data: new Int16Array(frames * config.numberOfChannels),
    });
    encoder.encode(silence);
    silence.close();
    await encoder.flush();
  } finally {
    if (encoder.state !== 'closed') {
      encoder.close();
    }
  }
  return head;
}
