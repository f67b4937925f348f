import type { FramegateClient, OpenSettings } from '../client.js';
import { Emitter } from '../emitter.js';
import { Track } from '../../../src/protocol/media-header.js';
import {
  AdaptiveCapture,
  type AdaptDecision,
  type AdaptiveCaptureOptions,
} from './adaptive-capture.js';
import type { CameraCapture } from './camera-capture.js';
import type { MicrophoneCapture } from './microphone-capture.js';

export interface CaptureSessionOptions {
  camera?: CameraCapture;
  microphone?: MicrophoneCapture;
  /** Lower fps and JPEG quality under `flow` or a growing window (default on); `false` for off. */
  adaptive?: AdaptiveCaptureOptions | false;
  /** How often the adaptive capture looks at the client's stats (default 250 ms). */
  adaptEveryMs?: number;
}

/** A media message the client took. */
export interface TakenMedia {
  seq: number;
  track: Track;
  bytes: number;
  pts: number;
}

export interface CaptureSessionEvents {
  /** The client took a frame or an audio chunk (it is in the outbox, on its way). */
  taken: (media: TakenMedia) => void;
  /** A video frame was dropped before the client took it: newer ones were waiting. */
  dropped: (track: Track) => void;
  /** The adaptive capture changed the camera's fps or quality. */
  adapt: (decision: AdaptDecision) => void;
  /** The client stopped taking media (closed, failed): the capture stopped. */
  stopped: (reason: string) => void;
}

interface Pending {
  track: Track;
  payload: Uint8Array;
  capturedAt: number;
}

/** Video frames that may wait for a rate slot; an older one is dropped for a newer one. */
const MAX_WAITING_VIDEO = 2;
/** Audio chunks that may wait (about 5 s at 10 a second); audio is dropped only past it. */
const MAX_WAITING_AUDIO = 50;

/**
 * The `open` settings for a camera and a microphone: `video` at the camera's size and fps,
 * `audio` at the microphone's rate and channels.
 */
export function captureSettings(
  camera: CameraCapture | undefined,
  microphone: MicrophoneCapture | undefined,
  params: Record<string, unknown> = {},
): OpenSettings {
  return {
    params,
    video: camera
      ? { width: camera.width, height: camera.height, fps: camera.fps }
      : { width: 16, height: 16 },
    ...(microphone
      ? { audio: { sampleRate: microphone.sampleRate, channels: microphone.channels } }
      : {}),
  };
}

/**
 * Feeds a camera and a microphone into an open client. `pts` is each frame's capture time on the
 * session's clock (`client.clockOrigin()`, which a reloaded page continues), video `pts` strictly
 * rising. Media wait in capture order for the client's rate slots: audio is never skipped for
 * them, video frames are (a newer frame replaces the oldest waiting). With `adaptive`, the
 * camera's fps and quality follow `flow` and the unacknowledged window (`AdaptiveCapture`).
 */
export class CaptureSession extends Emitter<CaptureSessionEvents> {
  private readonly queue: Pending[] = [];
  private readonly adaptive: AdaptiveCapture | null;
  private waiting = false;
  private running = false;
  private lastVideoPts = -1;
  private adaptTimer: ReturnType<typeof setInterval> | null = null;
  private offFlow: (() => void) | null = null;
  private readonly counts = { video: 0, audio: 0, dropped: 0 };

  constructor(
    private readonly client: FramegateClient,
    private readonly options: CaptureSessionOptions,
  ) {
    super();
    const camera = options.camera;
    this.adaptive =
      options.adaptive === false || !camera
        ? null
        : new AdaptiveCapture({
            reservedFps: options.microphone?.chunksPerSecond ?? 0,
            ...options.adaptive,
            target: { fps: camera.fps, quality: camera.quality, ...options.adaptive?.target },
          });
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
    this.options.camera?.start(({ jpeg, capturedAt }) =>
      this.enqueue({ track: Track.Video, payload: jpeg, capturedAt }),
    );
    this.options.microphone?.start(({ pcm, capturedAt }) =>
      this.enqueue({ track: Track.Audio, payload: pcm, capturedAt }),
    );
    if (this.adaptive) {
      const adapt = () => this.adapt();
      this.adaptTimer = setInterval(adapt, this.options.adaptEveryMs ?? 250);
      this.offFlow = this.client.on('flow', adapt);
    }
  }

  /**
   * Stops capturing. What the client took stays in its outbox; what still waited for a rate slot
   * is handed over first unless `discard`.
   */
  async stop(discard = false): Promise<void> {
    this.halt();
    if (discard) {
      this.queue.length = 0;
    }
    while (this.queue.length > 0 && this.pump()) {
      await this.client.ready();
    }
  }

  /** Frames and chunks taken so far, frames dropped, and the camera's settings now. */
  stats(): { video: number; audio: number; dropped: number; fps: number; quality: number } {
    return {
      ...this.counts,
      fps: this.options.camera?.fps ?? 0,
      quality: this.options.camera?.quality ?? 0,
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
    this.offFlow?.();
    this.offFlow = null;
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
      camera.quality = decision.quality;
      this.emit('adapt', decision);
    }
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
        result = this.client.trySend(media.payload, media.track, pts);
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
      } else {
        this.counts.audio++;
      }
      this.emit('taken', { seq: result, track: media.track, bytes: media.payload.length, pts });
    }
    return true;
  }
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
