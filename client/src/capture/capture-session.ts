import { ClientError, type FramegateClient, type OpenSettings } from '../client.js';
import { Emitter } from '../emitter.js';
import { Track } from '../../../src/protocol/media-header.js';
import type { Opened } from '../../../src/protocol/open-session.schema.js';
import {
  AdaptiveCapture,
  type AdaptDecision,
  type AdaptiveCaptureOptions,
} from './adaptive-capture.js';
import type { CameraCapture, CapturedVideoFrame } from './camera-capture.js';
import type { CapturedAudio, MicrophoneCapture } from './microphone-capture.js';
import { OpusChunkEncoder } from './opus-chunk-encoder.js';
import { VideoChunkEncoder, type EncodedVideoChunkData } from './video-chunk-encoder.js';
import {
  defaultBitrate,
  encoderRate,
  familyOf,
  fromBase64,
  sameBytes,
  type VideoCodecChoice,
} from './video-codec.js';

export interface CaptureSessionOptions {
  camera?: CameraCapture;
  microphone?: MicrophoneCapture;
  /**
   * Encode the camera with this encoder instead of sending JPEG images; `CaptureSession.open`
   * chooses one. Its bitrate is the target: the adaptive capture spends a share of it.
   */
  encoder?: VideoChunkEncoder;
  /**
   * Encode the microphone as Opus with this encoder instead of sending PCM (only beside an
   * `encoder`: the server takes Opus beside compressed video alone); `CaptureSession.open`
   * chooses.
   */
  audioEncoder?: OpusChunkEncoder;
  /**
   * Lower fps and JPEG quality (with an encoder: bitrate, and VP8/VP9's size) under `flow` or a
   * growing window (default on); `false` for off.
   */
  adaptive?: AdaptiveCaptureOptions | false;
  /** How often the adaptive capture looks at the client's stats (default 250 ms). */
  adaptEveryMs?: number;
}

export interface CaptureOpenOptions extends Omit<
  CaptureSessionOptions,
  'encoder' | 'audioEncoder'
> {
  /** The session's business parameters (`open.params`). */
  params?: Record<string, unknown>;
  /**
   * The video codec (default `auto`: H.264 where the browser encodes it, else VP9, else JPEG).
   * A channel that refuses it (`codec_not_allowed`) gets JPEG.
   */
  codec?: VideoCodecChoice;
  /**
   * Video bitrate to aim at, bit/s (default 0.1 bit per pixel per frame); never above what the
   * channel's `maxKbps` leaves after the audio.
   */
  bitrate?: number;
}

/** A media message the client took. */
export interface TakenMedia {
  seq: number;
  track: Track;
  bytes: number;
  pts: number;
  /** A compressed key frame. */
  key: boolean;
}

export interface CaptureSessionEvents {
  /** The client took a frame or an audio chunk (it is in the outbox, on its way). */
  taken: (media: TakenMedia) => void;
  /** A video frame was dropped before the client took it: newer ones were waiting. */
  dropped: (track: Track) => void;
  /** The adaptive capture changed the camera's fps or quality. */
  adapt: (decision: AdaptDecision) => void;
  /**
   * The video encoder failed and was configured anew (`fatal` false: the next chunk is a key
   * frame), or failed for good (`fatal` true: `stopped` follows). Likewise the Opus encoder
   * (`track` audio): configured anew, the audio goes on after a gap; failed for good, the
   * microphone stops and the video goes on.
   */
  encoderError: (error: { message: string; fatal: boolean; track: Track }) => void;
  /** The client stopped taking media (closed, failed), or the encoder failed: the capture stopped. */
  stopped: (reason: string) => void;
}

interface Pending {
  track: Track;
  payload: Uint8Array;
  capturedAt: number;
  key: boolean;
}

/** Video frames that may wait for a rate slot; an older one is dropped for a newer one. */
const MAX_WAITING_VIDEO = 2;
/**
 * Encoded chunks waiting for a rate slot beyond which frames are dropped before the encoder: a
 * chunk itself is never dropped alone, the deltas after it would not decode.
 */
const MAX_WAITING_CHUNKS = 2;
/**
 * Encoded chunks that may wait at most (those the encoder still held when the gate closed): past
 * it they are all dropped and the next chunk sent is a key frame.
 */
const MAX_WAITING_CHUNKS_HARD = 8;
/** Audio chunks that may wait (about 5 s at 10 a second); audio is dropped only past it. */
const MAX_WAITING_AUDIO = 50;

/**
 * The `open` settings for a camera and a microphone: `video` at the camera's size and fps,
 * `audio` at the microphone's rate and channels (Opus with an `audioEncoder`, else PCM).
 */
export function captureSettings(
  camera: CameraCapture | undefined,
  microphone: MicrophoneCapture | undefined,
  params: Record<string, unknown> = {},
  encoder?: VideoChunkEncoder | null,
  audioEncoder?: OpusChunkEncoder | null,
): OpenSettings {
  return {
    params,
    video: camera
      ? encoder
        ? { ...encoder.openSettings(), fps: camera.fps }
        : { width: camera.width, height: camera.height, fps: camera.fps }
      : { width: 16, height: 16 },
    ...(microphone
      ? {
          audio:
            encoder && audioEncoder
              ? audioEncoder.openSettings()
              : { sampleRate: microphone.sampleRate, channels: microphone.channels },
        }
      : {}),
  };
}

/**
 * Feeds a camera and a microphone into an open client. `pts` is each frame's capture time on the
 * session's clock (`client.clockOrigin()`, which a reloaded page continues), video `pts` strictly
 * rising. Media wait in capture order for the client's rate slots: audio is never skipped for
 * them. JPEG frames are (a newer frame replaces the oldest waiting); with an `encoder`, frames are
 * dropped before it instead, while chunks wait, since a delta without the chunks before it does
 * not decode. With `adaptive`, the camera's fps and JPEG quality, or the encoder's bitrate (and
 * VP8/VP9's size), follow `flow` and the unacknowledged window (`AdaptiveCapture`). An encoder
 * makes a key frame when the server asks (`keyframe`) and after a `bad_frame`. With an
 * `audioEncoder`, the microphone's chunks go through it and each Opus packet is one message, its
 * `pts` on the video's clock.
 */
export class CaptureSession extends Emitter<CaptureSessionEvents> {
  /**
   * What `CaptureSession.open` opened or resumed; null for a session built by hand on an open
   * client.
   */
  opened: (Opened & { resumed: boolean }) | null = null;
  private readonly queue: Pending[] = [];
  private readonly adaptive: AdaptiveCapture | null;
  private readonly encoder: VideoChunkEncoder | null;
  private readonly audioEncoder: OpusChunkEncoder | null;
  /** The Opus encoder failed for good: the microphone stays off, a restart included. */
  private audioFailed = false;
  /** What the encoder's level 1 means, bit/s, and the frame rate it is meant for. */
  private readonly targetBitrate: number;
  private readonly targetFps: number;
  private media: Opened['media']['video'] | null = null;
  private quality: number;
  private waiting = false;
  private running = false;
  /** Encoded chunks were dropped: deltas are dropped too until a key frame. */
  private needKey = false;
  private lastVideoPts = -1;
  private adaptTimer: ReturnType<typeof setInterval> | null = null;
  private readonly offClient: (() => void)[] = [];
  private readonly counts = { video: 0, audio: 0, dropped: 0, videoBytes: 0 };

  constructor(
    private readonly client: FramegateClient,
    private readonly options: CaptureSessionOptions,
  ) {
    super();
    const camera = options.camera;
    this.encoder = camera ? (options.encoder ?? null) : null;
    this.audioEncoder = this.encoder && options.microphone ? (options.audioEncoder ?? null) : null;
    this.targetFps = camera?.fps ?? 0;
    this.targetBitrate = this.encoder?.bitrate ?? 0;
    // With an encoder, "quality" is the share of its target bitrate.
    const quality = this.encoder ? 1 : (camera?.quality ?? 0);
    this.quality = quality;
    this.adaptive =
      options.adaptive === false || !camera
        ? null
        : new AdaptiveCapture({
            reservedFps:
              this.audioEncoder?.packetsPerSecond ?? options.microphone?.chunksPerSecond ?? 0,
            ...options.adaptive,
            target: { fps: camera.fps, quality, ...options.adaptive?.target },
          });
    const encoder = this.encoder;
    if (encoder) {
      encoder.on('chunk', (chunk) => this.onChunk(chunk));
      encoder.on('dropped', () => this.onDropped());
      encoder.on('recovered', (message) =>
        this.emit('encoderError', { message, fatal: false, track: Track.Video }),
      );
      encoder.on('failed', (message) => {
        this.emit('encoderError', { message, fatal: true, track: Track.Video });
        this.halt();
        this.emit('stopped', `the video encoder failed: ${message}`);
      });
    }
    const audioEncoder = this.audioEncoder;
    if (audioEncoder) {
      audioEncoder.on('chunk', ({ data, capturedAt }) =>
        this.enqueue({ track: Track.Audio, payload: data, capturedAt, key: false }),
      );
      audioEncoder.on('dropped', () => this.onAudioDropped());
      audioEncoder.on('recovered', (message) =>
        this.emit('encoderError', { message, fatal: false, track: Track.Audio }),
      );
      audioEncoder.on('failed', (message) => {
        this.emit('encoderError', { message, fatal: true, track: Track.Audio });
        this.audioFailed = true;
        options.microphone?.stop();
      });
    }
  }

  /**
   * Opens `client` for a camera and a microphone and returns the capture, not started. With a
   * camera, the codec is chosen (`codec`, default `auto`) and the encoder primed with a first
   * frame before `open` (H.264's `open` carries its avcC); a channel refusing the codec
   * (`codec_not_allowed`) gets JPEG. Beside compressed video the microphone is sent as Opus where
   * the browser encodes it (`AudioEncoder`), else as PCM. When the client resumes a session from
   * its persistent outbox (a reloaded page), the capture encodes as that session began: same
   * codec, size and avcC, the same audio codec; `ClientError` `codec_unavailable` when this
   * browser cannot (the session stays open: close it or stop the client).
   */
  static async open(
    client: FramegateClient,
    options: CaptureOpenOptions = {},
  ): Promise<CaptureSession> {
    const { camera, microphone, params } = options;
    let encoder: VideoChunkEncoder | null = null;
    if (camera && options.codec !== 'jpeg') {
      encoder = await VideoChunkEncoder.create(
        options.codec ?? 'auto',
        encoderSettings(camera, camera.width, camera.height, options.bitrate),
        () => camera.grabFrame(),
      );
    }
    let audioEncoder =
      encoder && microphone
        ? await OpusChunkEncoder.create(microphone.sampleRate, microphone.channels)
        : null;
    let opened: Opened & { resumed: boolean };
    try {
      opened = await client.open(
        captureSettings(camera, microphone, params, encoder, audioEncoder),
      );
    } catch (err) {
      encoder?.close();
      audioEncoder?.close();
      if (!encoder || !(err instanceof ClientError) || err.code !== 'codec_not_allowed') {
        throw err;
      }
      encoder = null;
      audioEncoder = null;
      opened = await client.open(captureSettings(camera, microphone, params));
    }
    try {
      if (camera) {
        encoder = await encoderForSession(client, opened, camera, encoder, options.bitrate);
      }
      if (microphone) {
        audioEncoder = await audioEncoderForSession(opened, microphone, audioEncoder);
      }
    } catch (err) {
      encoder?.close();
      audioEncoder?.close();
      throw err;
    }
    const session = new CaptureSession(client, {
      ...options,
      encoder: encoder ?? undefined,
      audioEncoder: audioEncoder ?? undefined,
    });
    session.opened = opened;
    return session;
  }

  /** The video codec sent: the encoder's codec string, or `jpeg`. */
  get codec(): string {
    return this.encoder?.codec ?? 'jpeg';
  }

  /** The audio codec sent: `opus`, `pcm`, or null without a microphone. */
  get audioCodec(): 'opus' | 'pcm' | null {
    return this.audioEncoder ? 'opus' : this.options.microphone ? 'pcm' : null;
  }

  /** Starts capturing; the client must be open (its clock known). */
  start(): void {
    if (this.running) {
      return;
    }
    if (this.client.clockOrigin() === null) {
      throw new Error('open the client before starting the capture');
    }
    this.running = true;
    const encoder = this.encoder;
    if (encoder) {
      // The first chunk after a start (a new page, a pause) needs no chunk before it.
      encoder.requestKeyFrame();
      this.applyMedia(this.opened?.media.video ?? null);
      this.offClient.push(
        this.client.on('keyframe', () => encoder.requestKeyFrame()),
        this.client.on('badFrame', () => encoder.requestKeyFrame()),
        this.client.on('opened', (opened) => this.applyMedia(opened.media.video)),
      );
      this.options.camera?.startFrames((frame) => this.onVideoFrame(encoder, frame));
    } else {
      this.options.camera?.start(({ jpeg, capturedAt }) =>
        this.enqueue({ track: Track.Video, payload: jpeg, capturedAt, key: false }),
      );
    }
    const audioEncoder = this.audioEncoder;
    const microphone = this.audioFailed ? undefined : this.options.microphone;
    microphone?.start(
      audioEncoder
        ? (audio) => this.onAudioChunk(audioEncoder, audio)
        : ({ pcm, capturedAt }) =>
            this.enqueue({ track: Track.Audio, payload: pcm, capturedAt, key: false }),
    );
    if (this.adaptive) {
      const adapt = () => this.adapt();
      this.adaptTimer = setInterval(adapt, this.options.adaptEveryMs ?? 250);
      this.offClient.push(this.client.on('flow', adapt), this.client.on('backpressure', adapt));
    }
  }

  /**
   * Stops capturing. What the client took stays in its outbox; what still waited for a rate slot
   * (and the encoder's last chunks) is handed over first unless `discard`.
   */
  async stop(discard = false): Promise<void> {
    this.options.camera?.stop();
    this.options.microphone?.stop();
    if (!discard && this.running) {
      await Promise.all([this.encoder?.flush(), this.audioEncoder?.flush()]);
    }
    this.halt();
    if (discard) {
      this.queue.length = 0;
    }
    while (this.queue.length > 0 && this.pump()) {
      await this.client.ready();
    }
  }

  /** Stops (handing over what waits unless `discard`) and releases the encoders. */
  async close(discard = false): Promise<void> {
    await this.stop(discard);
    this.encoder?.close();
    this.audioEncoder?.close();
  }

  /**
   * Frames and chunks taken so far, frames dropped, video bytes taken, and the settings now: the
   * camera's fps, the JPEG quality (with an encoder: the share of its target bitrate), the codec
   * and the encoder's bitrate (0 for JPEG), the audio codec.
   */
  stats(): {
    video: number;
    audio: number;
    dropped: number;
    videoBytes: number;
    fps: number;
    quality: number;
    codec: string;
    bitrate: number;
    audioCodec: 'opus' | 'pcm' | null;
  } {
    return {
      ...this.counts,
      fps: this.options.camera?.fps ?? 0,
      quality: this.encoder ? this.quality : (this.options.camera?.quality ?? 0),
      codec: this.codec,
      bitrate: this.encoder?.bitrate ?? 0,
      audioCodec: this.audioCodec,
    };
  }

  private halt(): void {
    this.running = false;
    this.options.camera?.stop();
    this.options.microphone?.stop();
    if (this.adaptTimer) {
      clearInterval(this.adaptTimer);
      this.adaptTimer = null;
    }
    for (const off of this.offClient.splice(0)) {
      off();
    }
  }

  /** The channel's limits for this session (`opened.media.video`): key-frame interval, quota. */
  private applyMedia(media: Opened['media']['video'] | null): void {
    if (!media || !this.encoder) {
      return;
    }
    this.media = media;
    this.encoder.keyframeIntervalMs = media.keyframeIntervalMs;
    this.applyRate(this.options.camera?.fps ?? this.targetFps);
  }

  private applyRate(fps: number): void {
    const encoder = this.encoder;
    const camera = this.options.camera;
    if (!encoder || !camera || !this.media) {
      return;
    }
    const microphone = this.options.microphone;
    const rate = encoderRate({
      family: encoder.family,
      targetBitrate: this.targetBitrate,
      quality: this.quality,
      fps,
      targetFps: this.targetFps,
      width: encoder.width,
      height: encoder.height,
      maxWidth: this.media.maxWidth,
      maxHeight: this.media.maxHeight,
      maxKbps: this.media.maxKbps,
      reservedBitrate: this.audioEncoder
        ? this.audioEncoder.bitrate
        : microphone
          ? microphone.sampleRate * microphone.channels * 16
          : 0,
    });
    encoder.adapt(rate, fps);
    camera.frameWidth = encoder.codedWidth;
    camera.frameHeight = encoder.codedHeight;
  }

  private adapt(): void {
    const camera = this.options.camera;
    if (!this.adaptive || !camera) {
      return;
    }
    const stats = this.client.stats();
    const decision = this.adaptive.update({
      now: performance.now(),
      maxFps: stats.maxFps,
      outboxDepth: stats.outboxDepth,
    });
    if (decision.changed) {
      camera.fps = decision.fps;
      this.quality = decision.quality;
      if (this.encoder) {
        this.applyRate(decision.fps);
      } else {
        camera.quality = decision.quality;
      }
      this.emit('adapt', decision);
    }
  }

  /** A camera frame for the encoder: dropped here when chunks or frames already wait. */
  private onVideoFrame(encoder: VideoChunkEncoder, captured: CapturedVideoFrame): void {
    if (!this.running || this.waitingVideo() >= MAX_WAITING_CHUNKS || encoder.busy) {
      captured.frame.close();
      this.onDropped();
      return;
    }
    encoder.encode(captured);
  }

  private onChunk(chunk: EncodedVideoChunkData): void {
    if (!this.running) {
      return;
    }
    if (this.needKey && !chunk.key) {
      return this.onDropped();
    }
    this.needKey = false;
    if (this.waitingVideo() >= MAX_WAITING_CHUNKS_HARD) {
      // The client took nothing for a while: drop what waits, and send from a key frame on.
      for (let i = this.queue.length - 1; i >= 0; i--) {
        if (this.queue[i].track === Track.Video) {
          this.queue.splice(i, 1);
          this.onDropped();
        }
      }
      if (!chunk.key) {
        this.needKey = true;
        this.encoder?.requestKeyFrame();
        return this.onDropped();
      }
    }
    this.queue.push({
      track: Track.Video,
      payload: chunk.data,
      capturedAt: chunk.capturedAt,
      key: chunk.key,
    });
    if (!this.waiting) {
      this.drain();
    }
  }

  private onAudioChunk(encoder: OpusChunkEncoder, audio: CapturedAudio): void {
    if (this.running) {
      encoder.encode(audio);
    }
  }

  private onAudioDropped(): void {
    this.counts.dropped++;
    this.emit('dropped', Track.Audio);
  }

  private onDropped(): void {
    this.counts.dropped++;
    this.emit('dropped', Track.Video);
  }

  private waitingVideo(): number {
    let waiting = 0;
    for (const p of this.queue) {
      waiting += p.track === Track.Video ? 1 : 0;
    }
    return waiting;
  }

  private enqueue(media: Pending): void {
    if (!this.running) {
      return;
    }
    const limit = media.track === Track.Video ? MAX_WAITING_VIDEO : MAX_WAITING_AUDIO;
    let waiting = 0;
    for (const p of this.queue) {
      waiting += p.track === media.track ? 1 : 0;
    }
    if (waiting >= limit) {
      const oldest = this.queue.findIndex((p) => p.track === media.track);
      this.queue.splice(oldest, 1);
      this.counts.dropped++;
      this.emit('dropped', media.track);
    }
    this.queue.push(media);
    if (!this.waiting) {
      this.drain();
    }
  }

  /** Hands waiting media to the client until it refuses one, then waits for `ready`. */
  private drain(): void {
    if (!this.pump() || this.queue.length === 0) {
      return;
    }
    this.waiting = true;
    this.client.ready().then(
      () => {
        this.waiting = false;
        this.drain();
      },
      () => {
        this.waiting = false;
      },
    );
  }

  /** Gives the client what it takes now; false once the client takes nothing any more. */
  private pump(): boolean {
    const origin = this.client.clockOrigin() ?? Date.now();
    while (this.queue.length > 0) {
      const media = this.queue[0];
      let pts = Math.max(0, Math.round(media.capturedAt - origin));
      if (media.track === Track.Video && pts <= this.lastVideoPts) {
        pts = this.lastVideoPts + 1;
      }
      let result: number | 'rate' | 'full';
      try {
        result = this.client.trySend(media.payload, media.track, pts, media.key);
      } catch (err) {
        this.halt();
        this.queue.length = 0;
        this.emit('stopped', err instanceof Error ? err.message : String(err));
        return false;
      }
      if (typeof result !== 'number') {
        return true;
      }
      this.queue.shift();
      if (media.track === Track.Video) {
        this.lastVideoPts = pts;
        this.counts.video++;
        this.counts.videoBytes += media.payload.length;
      } else {
        this.counts.audio++;
      }
      this.emit('taken', {
        seq: result,
        track: media.track,
        bytes: media.payload.length,
        pts,
        key: media.key,
      });
    }
    return true;
  }
}

/** What an encoder for `camera` at `width`×`height` is set up with. */
function encoderSettings(
  camera: CameraCapture,
  width: number,
  height: number,
  bitrate: number | undefined,
) {
  camera.frameWidth = width;
  camera.frameHeight = height;
  return {
    width,
    height,
    fps: camera.fps,
    bitrate: bitrate ?? defaultBitrate(width, height, camera.fps),
  };
}

/**
 * The encoder for the session in force: none for JPEG; `prepared` when it matches the session
 * (a new one, or one resumed with the same codec, size and avcC); else one made to match it.
 */
async function encoderForSession(
  client: FramegateClient,
  opened: Opened,
  camera: CameraCapture,
  prepared: VideoChunkEncoder | null,
  bitrate: number | undefined,
): Promise<VideoChunkEncoder | null> {
  const codec = opened.media.video.codec;
  if (familyOf(codec) === 'jpeg') {
    prepared?.close();
    camera.frameWidth = camera.width;
    camera.frameHeight = camera.height;
    return null;
  }
  const video = client.sessionSettings()?.video;
  const width = video?.width ?? camera.width;
  const height = video?.height ?? camera.height;
  const description = video?.description ? fromBase64(video.description) : null;
  if (
    prepared &&
    prepared.codec === codec &&
    prepared.width === width &&
    prepared.height === height &&
    (description === null || sameBytes(prepared.description, description))
  ) {
    return prepared;
  }
  prepared?.close();
  const encoder = await VideoChunkEncoder.reproduce(
    codec,
    encoderSettings(camera, width, height, bitrate),
    description,
    () => camera.grabFrame(),
  );
  if (!encoder) {
    throw new ClientError(
      'codec_unavailable',
      `the session in force sends ${codec} at ${width}x${height}` +
        `${description ? ' with its avcC' : ''}, which this browser cannot encode alike`,
    );
  }
  return encoder;
}

/**
 * The Opus encoder for the session in force: none when it sends PCM (a JPEG session, a browser
 * without Opus, or a resumed session that began so); `prepared` when it sends Opus, or a new one.
 */
async function audioEncoderForSession(
  opened: Opened,
  microphone: MicrophoneCapture,
  prepared: OpusChunkEncoder | null,
): Promise<OpusChunkEncoder | null> {
  if (opened.media.audio?.codec !== 'opus') {
    prepared?.close();
    return null;
  }
  const encoder =
    prepared ?? (await OpusChunkEncoder.create(microphone.sampleRate, microphone.channels));
  if (!encoder) {
    throw new ClientError(
      'codec_unavailable',
      'the session in force sends Opus audio, which this browser cannot encode',
    );
  }
  return encoder;
}

/**
 * Sends a text message (`msg`) with a fresh id and returns the id; `messageAck` fires with it once
 * the server stored it. The body is `{ text, at }`, `at` the ISO time it was written.
 */
export function sendText(client: FramegateClient, text: string): string {
  const id = globalThis.crypto.randomUUID();
  client.sendMessage(id, { text, at: new Date().toISOString() });
  return id;
}
