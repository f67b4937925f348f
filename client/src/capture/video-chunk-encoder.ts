import type { VideoCodecFamily } from '../../../src/protocol/codecs.js';
import { Emitter } from '../emitter.js';
import type { CapturedVideoFrame } from './camera-capture.js';
import {
  codecCandidates,
  familyOf,
  sameBytes,
  toBase64,
  type EncoderRate,
  type VideoCodecChoice,
} from './video-codec.js';

/** One encoded chunk, as the session sends it. */
export interface EncodedVideoChunkData {
  data: Uint8Array;
  key: boolean;
  /** Epoch ms of the frame it encodes (its VideoFrame's timestamp). */
  capturedAt: number;
}

export interface VideoChunkEncoderEvents {
  chunk: (chunk: EncodedVideoChunkData) => void;
  /** A frame was not encoded: the encoder was behind (or recovering). */
  dropped: () => void;
  /**
   * The encoder failed and was configured anew; its next chunk is a key frame. Or (H.264) its
   * avcC changed on a reconfigure: the chunks in between were dropped, and the declared
   * configuration is back, its bitrate fixed from now on.
   */
  recovered: (why: string) => void;
  /** The encoder failed again and again: no more chunks come. */
  failed: (why: string) => void;
}

/** What the encoder is set up for. */
export interface VideoChunkEncoderSettings {
  width: number;
  height: number;
  fps: number;
  bitrate: number;
}

/** Frames may wait this many deep inside the encoder; more are dropped at capture. */
const MAX_ENCODE_QUEUE = 2;
/** Errors in a row (no chunk in between) after which the encoder is given up. */
const MAX_CONSECUTIVE_ERRORS = 3;
/**
 * Key frames come this much sooner than the server's `keyframeIntervalMs`, so that it never has
 * to ask: a request costs a round trip of deltas the recorder must hold.
 */
const KEY_INTERVAL_SHARE = 0.8;
/** The key-frame interval until the server's is known (`opened.media`). */
const DEFAULT_KEY_INTERVAL_MS = 4000;
/** A new bitrate differing by less than this share is not worth a reconfigure. */
const BITRATE_HYSTERESIS = 0.05;
/** H.264 chunks in a row with a foreign avcC, after going back to the declared one: give up. */
const MAX_MISMATCHED_CHUNKS = 30;

function bytesOf(source: AllowSharedBufferSource): Uint8Array {
  return ArrayBuffer.isView(source)
    ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength).slice()
    : new Uint8Array(source).slice();
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * A WebCodecs `VideoEncoder` for a session: realtime, H.264 in AVCC form (`avc: {format: 'avc'}`:
 * length-prefixed NAL units, parameter sets in the avcC), VP8 or VP9. It makes key frames on
 * request and every `keyframeIntervalMs` or sooner, drops frames rather than queue them when it is
 * behind, configures itself anew after an encoder error, and checks that H.264's avcC stays the one
 * declared in `open` (the server refuses a stream whose SPS changes: one MP4 track, one
 * configuration). Measured in Chromium 150 (OpenH264): a new bitrate or frame rate keeps the avcC,
 * a new size does not, so H.264 adapts bitrate and frame rate, VP8/VP9 also their size.
 */
export class VideoChunkEncoder extends Emitter<VideoChunkEncoderEvents> {
  readonly family: VideoCodecFamily;
  /** The avcC for H.264 (`metadata.decoderConfig.description` of the first chunk); else null. */
  description: Uint8Array | null = null;
  private encoder: VideoEncoder;
  private config: VideoEncoderConfig;
  /** The configuration declared in `open`: what H.264 goes back to if its avcC changes. */
  private readonly declared: VideoEncoderConfig;
  /** The last decoder configuration the encoder reported. */
  private current: Uint8Array | null = null;
  private priming = false;
  private keyRequested = true;
  private lastKeyAt = -Infinity;
  private keyIntervalMs = DEFAULT_KEY_INTERVAL_MS * KEY_INTERVAL_SHARE;
  private errors = 0;
  private mismatched = 0;
  /** H.264 whose avcC changed on a reconfigure: its configuration stays the declared one. */
  private locked = false;
  private closed = false;

  private constructor(config: VideoEncoderConfig) {
    super();
    this.family = familyOf(config.codec);
    this.config = config;
    this.declared = config;
    this.encoder = this.newEncoder();
  }

  /**
   * The first codec of `choice` this browser encodes (`isConfigSupported`, hardware preferred,
   * then any), primed with one frame of `grab`: H.264's avcC comes with its first chunk, and a
   * codec the browser claims but cannot encode fails here rather than mid-session. Null when none
   * works (or for `jpeg`): the capture sends JPEG images.
   */
  static async create(
    choice: VideoCodecChoice,
    settings: VideoChunkEncoderSettings,
    grab: () => CapturedVideoFrame,
  ): Promise<VideoChunkEncoder | null> {
    if (typeof VideoEncoder === 'undefined') {
      return null;
    }
    for (const codec of codecCandidates(choice, settings.width, settings.height)) {
      const encoder = await VideoChunkEncoder.tryCodec(codec, settings, grab);
      if (encoder) {
        return encoder;
      }
    }
    return null;
  }

  /**
   * An encoder for a session that began elsewhere (a reloaded page resumes it): exactly its
   * `codec` and size; for H.264 it must reproduce the avcC declared then, or null.
   */
  static async reproduce(
    codec: string,
    settings: VideoChunkEncoderSettings,
    description: Uint8Array | null,
    grab: () => CapturedVideoFrame,
  ): Promise<VideoChunkEncoder | null> {
    if (typeof VideoEncoder === 'undefined') {
      return null;
    }
    const encoder = await VideoChunkEncoder.tryCodec(codec, settings, grab);
    if (encoder && description && !sameBytes(encoder.description, description)) {
      encoder.close();
      return null;
    }
    return encoder;
  }

  private static async tryCodec(
    codec: string,
    settings: VideoChunkEncoderSettings,
    grab: () => CapturedVideoFrame,
  ): Promise<VideoChunkEncoder | null> {
    for (const hardwareAcceleration of ['prefer-hardware', 'no-preference'] as const) {
      const config: VideoEncoderConfig = {
        codec,
        width: settings.width,
        height: settings.height,
        bitrate: settings.bitrate,
        framerate: Math.max(1, settings.fps),
        latencyMode: 'realtime',
        hardwareAcceleration,
        ...(familyOf(codec) === 'avc' ? { avc: { format: 'avc' as const } } : {}),
      };
      let supported = false;
      try {
        supported = (await VideoEncoder.isConfigSupported(config)).supported === true;
      } catch {
        // A codec string this browser cannot even parse: not supported.
      }
      if (!supported) {
        continue;
      }
      const encoder = new VideoChunkEncoder(config);
      try {
        await encoder.prime(grab());
        return encoder;
      } catch {
        encoder.close();
      }
    }
    return null;
  }

  /** The codec string in force (what `open` declares). */
  get codec(): string {
    return this.declared.codec;
  }

  /** The coded size declared in `open`. */
  get width(): number {
    return this.declared.width;
  }

  get height(): number {
    return this.declared.height;
  }

  /** The coded size now (VP8/VP9 may code a smaller one under `flow`). */
  get codedWidth(): number {
    return this.config.width;
  }

  get codedHeight(): number {
    return this.config.height;
  }

  /** The bitrate asked of the encoder now, bit/s. */
  get bitrate(): number {
    return this.config.bitrate ?? 0;
  }

  /** The `video` fields of `open` for this encoder: codec, coded size, base64 avcC. */
  openSettings(): { codec: string; width: number; height: number; description?: string } {
    return {
      codec: this.codec,
      width: this.width,
      height: this.height,
      ...(this.description ? { description: toBase64(this.description) } : {}),
    };
  }

  /** Frames waiting in the encoder (a capture drops frames rather than add to a long queue). */
  get busy(): boolean {
    return this.closed || this.encoder.encodeQueueSize >= MAX_ENCODE_QUEUE;
  }

  /** The server's key-frame interval (`opened.media.video.keyframeIntervalMs`). */
  set keyframeIntervalMs(ms: number) {
    this.keyIntervalMs = ms * KEY_INTERVAL_SHARE;
  }

  /** The next frame is encoded as a key frame (`keyframe` request, `bad_frame`, a restart). */
  requestKeyFrame(): void {
    this.keyRequested = true;
  }

  /**
   * Encodes a frame (and closes it), as a key frame when one is due; drops it when the encoder is
   * behind. True when it was handed to the encoder.
   */
  encode({ frame, capturedAt }: CapturedVideoFrame): boolean {
    if (this.busy || this.encoder.state !== 'configured') {
      frame.close();
      this.emit('dropped');
      return false;
    }
    const key = this.keyRequested || capturedAt - this.lastKeyAt >= this.keyIntervalMs;
    try {
      this.encoder.encode(frame, { keyFrame: key });
    } catch (err) {
      frame.close();
      this.onError(err);
      return false;
    }
    frame.close();
    if (key) {
      this.keyRequested = false;
      this.lastKeyAt = capturedAt;
    }
    return true;
  }

  /**
   * Asks for a new rate (the adaptive capture's): the bitrate, and for VP8/VP9 the coded size.
   * H.264 keeps its size; once its avcC changed on a reconfigure it keeps its bitrate too, and
   * only the capture's frame rate adapts.
   */
  adapt(rate: EncoderRate, fps: number): void {
    if (this.closed || this.locked || fps <= 0) {
      return;
    }
    const resized =
      this.family !== 'avc' &&
      (rate.width !== this.config.width || rate.height !== this.config.height);
    const bitrateMoved = Math.abs(rate.bitrate - this.bitrate) > this.bitrate * BITRATE_HYSTERESIS;
    if (!resized && !bitrateMoved) {
      return;
    }
    this.reconfigure({
      ...this.config,
      bitrate: rate.bitrate,
      framerate: fps,
      ...(resized ? { width: rate.width, height: rate.height } : {}),
    });
    if (resized) {
      this.keyRequested = true;
    }
  }

  /** Delivers every chunk of the frames handed over so far. */
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

  private newEncoder(): VideoEncoder {
    // A new encoder reports its configuration with its first chunk.
    this.current = null;
    const encoder = new VideoEncoder({
      output: (chunk, metadata) => this.onChunk(encoder, chunk, metadata),
      error: (err) => {
        if (encoder === this.encoder) {
          this.onError(err);
        }
      },
    });
    encoder.configure(this.config);
    return encoder;
  }

  /** Encodes one frame as a key frame and keeps its decoder configuration; the chunk is dropped. */
  private async prime({ frame }: CapturedVideoFrame): Promise<void> {
    this.priming = true;
    try {
      this.encoder.encode(frame, { keyFrame: true });
    } finally {
      frame.close();
    }
    // An encoder error rejects this (the encoder is closed then).
    await this.encoder.flush();
    this.priming = false;
    this.description = this.current;
    if (this.family === 'avc' && !this.description) {
      throw new Error(`${this.codec}: the encoder gave no avcC`);
    }
  }

  private onChunk(
    encoder: VideoEncoder,
    chunk: EncodedVideoChunk,
    metadata: EncodedVideoChunkMetadata | undefined,
  ): void {
    if (encoder !== this.encoder || this.closed) {
      return;
    }
    const description = metadata?.decoderConfig?.description;
    if (description) {
      this.current = bytesOf(description);
    }
    if (this.priming) {
      return;
    }
    if (this.family === 'avc' && !sameBytes(this.current, this.description)) {
      this.onForeignAvcC();
      return;
    }
    this.errors = 0;
    this.mismatched = 0;
    const key = chunk.type === 'key';
    const capturedAt = chunk.timestamp / 1000;
    if (key) {
      this.lastKeyAt = Math.max(this.lastKeyAt, capturedAt);
    }
    const data = new Uint8Array(chunk.byteLength);
    chunk.copyTo(data);
    this.emit('chunk', { data, key, capturedAt });
  }

  /**
   * The server would refuse this chunk and every one after it. Going back to the declared
   * configuration with `configure` is not enough (OpenH264 then lists every SPS it made in its
   * avcC); a new encoder with it gives the declared avcC again (measured: the same configuration
   * gives the same avcC, which is also what lets a reloaded page resume an H.264 session).
   */
  private onForeignAvcC(): void {
    this.emit('dropped');
    if (!this.locked) {
      this.locked = true;
      this.config = this.declared;
      this.replaceEncoder('the avcC changed on a reconfigure: its bitrate is fixed now');
    } else if (++this.mismatched > MAX_MISMATCHED_CHUNKS) {
      this.close();
      this.emit('failed', `the encoder no longer makes the avcC declared for ${this.codec}`);
    }
  }

  private reconfigure(config: VideoEncoderConfig): void {
    this.config = config;
    try {
      this.encoder.configure(config);
    } catch (err) {
      this.onError(err);
    }
  }

  /** An errored VideoEncoder is closed for good: a new one, configured alike, starts with a key. */
  private onError(err: unknown): void {
    if (this.closed || this.priming) {
      return;
    }
    this.errors++;
    if (this.errors > MAX_CONSECUTIVE_ERRORS) {
      this.close();
      this.emit('failed', message(err));
      return;
    }
    this.replaceEncoder(message(err));
  }

  private replaceEncoder(why: string): void {
    if (this.encoder.state !== 'closed') {
      this.encoder.close();
    }
    try {
      this.encoder = this.newEncoder();
    } catch (err) {
      this.close();
      this.emit('failed', message(err));
      return;
    }
    this.keyRequested = true;
    this.emit('recovered', why);
  }
}
