/** A JPEG from the camera and the time its video frame was captured. */
export interface CapturedFrame {
  jpeg: Uint8Array;
  /** Epoch ms (`performance.timeOrigin` based, so monotonic within a page). */
  capturedAt: number;
}

/**
 * A picture of the camera for a `VideoEncoder`, and the time it was captured. Its `timestamp` is
 * `capturedAt` in microseconds, so that the encoder's chunks carry it. The receiver closes it.
 */
export interface CapturedVideoFrame {
  frame: VideoFrame;
  capturedAt: number;
}

export interface CameraCaptureOptions {
  /** Capture from this stream instead of asking `getUserMedia` (which is then not called). */
  stream?: MediaStream;
  /** `getUserMedia` video constraints; default 640×480 ideal, the user-facing camera. */
  constraints?: MediaTrackConstraints;
  /** Frames per second to take (default 10); 0 pauses. */
  fps?: number;
  /** JPEG quality, 0–1 (default 0.7). */
  quality?: number;
  /** Wider camera images are scaled down to this width (default 1280). */
  maxWidth?: number;
  /** A `<video>` element to show the camera in (a preview); a detached one is used otherwise. */
  video?: HTMLVideoElement;
}

const DEFAULT_CONSTRAINTS: MediaTrackConstraints = {
  width: { ideal: 640 },
  height: { ideal: 480 },
  facingMode: 'user',
};

/** A frame reported by requestVideoFrameCallback within this long is the one on screen. */
const FRAME_CALLBACK_FRESH_MS = 500;

interface FrameCallbackMetadata {
  captureTime?: number;
  expectedDisplayTime: number;
  presentedFrames: number;
}
type FrameCallbackVideo = HTMLVideoElement & {
  requestVideoFrameCallback(cb: (now: number, metadata: FrameCallbackMetadata) => void): number;
  cancelVideoFrameCallback(handle: number): void;
};

/**
 * The camera as JPEGs at a target fps and quality: frames are drawn from a `<video>` playing the
 * camera onto an OffscreenCanvas (`convertToBlob`), or an HTMLCanvasElement (`toBlob`) where there
 * is none. Each frame carries the capture time of its video frame (`requestVideoFrameCallback`'s
 * `captureTime`, else its display time) when the browser reports it, the time it was drawn
 * otherwise. A frame is skipped, never queued, while the previous one is still being encoded (a
 * slow phone takes fewer frames rather than falling behind), and so is a video frame already
 * taken (a camera slower than the target fps). For a `VideoEncoder`, `startFrames` hands out the
 * canvas as VideoFrames instead, with the same timing.
 */
export class CameraCapture {
  /** Size of the JPEGs: the camera's, scaled down to `maxWidth`, even. */
  readonly width: number;
  readonly height: number;
  /**
   * Size of the VideoFrames (`startFrames`, `grabFrame`): `width`×`height` unless an encoder
   * that codes a smaller picture (VP8/VP9 under `flow`) sets it.
   */
  frameWidth: number;
  frameHeight: number;
  fps: number;
  quality: number;
  private readonly canvas: OffscreenCanvas | HTMLCanvasElement;
  private readonly context: OffscreenCanvasRenderingContext2D | CanvasRenderingContext2D;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private frameCallback: number | null = null;
  private nextAt = 0;
  private encoding = false;
  private running = false;
  /** The latest video frame as requestVideoFrameCallback reported it. */
  private frameTime: number | null = null;
  private frameSeenAt = -Infinity;
  private frameNumber = -1;
  private takenFrameNumber = -1;

  private constructor(
    private readonly stream: MediaStream,
    private readonly ownsStream: boolean,
    private readonly video: HTMLVideoElement,
    options: CameraCaptureOptions,
  ) {
    this.fps = options.fps ?? 10;
    this.quality = options.quality ?? 0.7;
    const scale = Math.min(1, (options.maxWidth ?? 1280) / video.videoWidth);
    this.width = even(video.videoWidth * scale);
    this.height = even(video.videoHeight * scale);
    this.frameWidth = this.width;
    this.frameHeight = this.height;
    if (typeof OffscreenCanvas !== 'undefined') {
      this.canvas = new OffscreenCanvas(this.width, this.height);
    } else {
      this.canvas = document.createElement('canvas');
      this.canvas.width = this.width;
      this.canvas.height = this.height;
    }
    const context = this.canvas.getContext('2d', { alpha: false });
    if (!context) {
      throw new Error('no 2D canvas context');
    }
    this.context = context as OffscreenCanvasRenderingContext2D | CanvasRenderingContext2D;
  }

  /** Opens the camera (asks for permission unless `stream` is given) and waits for its size. */
  static async open(options: CameraCaptureOptions = {}): Promise<CameraCapture> {
    const stream =
      options.stream ??
      (await navigator.mediaDevices.getUserMedia({
        video: options.constraints ?? DEFAULT_CONSTRAINTS,
        audio: false,
      }));
    try {
      const video = options.video ?? document.createElement('video');
      video.muted = true;
      video.playsInline = true;
      video.srcObject = stream;
      if (video.readyState < HTMLMediaElement.HAVE_METADATA) {
        await new Promise<void>((resolve, reject) => {
          video.addEventListener('loadedmetadata', () => resolve(), { once: true });
          video.addEventListener('error', () => reject(new Error('the camera did not start')), {
            once: true,
          });
        });
      }
      await video.play();
      return new CameraCapture(stream, !options.stream, video, options);
    } catch (err) {
      if (!options.stream) {
        stream.getTracks().forEach((t) => t.stop());
      }
      throw err;
    }
  }

  /** Starts taking frames; each JPEG goes to `onFrame`. */
  start(onFrame: (frame: CapturedFrame) => void): void {
    this.run((at) => this.takeJpeg(at, onFrame));
  }

  /**
   * Starts taking frames as VideoFrames of `frameWidth`×`frameHeight` (for a `VideoEncoder`);
   * `onFrame` closes each. Nothing waits here: a receiver that is behind drops the frame.
   */
  startFrames(onFrame: (frame: CapturedVideoFrame) => void): void {
    this.run((at) => onFrame(this.grabFrame(at)));
  }

  /** The picture on screen now as a VideoFrame (e.g. to prime an encoder); the caller closes it. */
  grabFrame(capturedAt = performance.timeOrigin + performance.now()): CapturedVideoFrame {
    this.fit(this.frameWidth, this.frameHeight);
    this.context.drawImage(this.video, 0, 0, this.frameWidth, this.frameHeight);
    const frame = new VideoFrame(this.canvas, {
      timestamp: Math.round(capturedAt * 1000),
      alpha: 'discard',
    });
    return { frame, capturedAt };
  }

  private run(take: (capturedAt: number) => void): void {
    if (this.running) {
      return;
    }
    this.running = true;
    this.watchFrames();
    this.nextAt = performance.now();
    const tick = (): void => {
      if (!this.running) {
        return;
      }
      const now = performance.now();
      // Paused (fps 0): look again soon, a `flow` may allow frames again.
      const interval = this.fps > 0 ? 1000 / this.fps : 250;
      // Drift-free, but a stall (a busy main thread) is not made up with a burst.
      this.nextAt = Math.max(this.nextAt + interval, now);
      this.timer = setTimeout(tick, this.nextAt - now);
      if (this.fps > 0 && !this.encoding) {
        const at = this.nextFrameTime();
        if (at !== null) {
          take(at);
        }
      }
    };
    tick();
  }

  /** Stops taking frames; the camera stays open for a later `start` (see `close`). */
  stop(): void {
    this.running = false;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.frameCallback !== null) {
      (this.video as FrameCallbackVideo).cancelVideoFrameCallback(this.frameCallback);
      this.frameCallback = null;
    }
  }

  /** Stops and releases the camera (when this capture opened it). */
  close(): void {
    this.stop();
    this.video.srcObject = null;
    if (this.ownsStream) {
      this.stream.getTracks().forEach((t) => t.stop());
    }
  }

  private watchFrames(): void {
    const video = this.video as FrameCallbackVideo;
    if (typeof video.requestVideoFrameCallback !== 'function') {
      return;
    }
    const onFrame = (now: number, metadata: FrameCallbackMetadata): void => {
      this.frameTime = metadata.captureTime ?? metadata.expectedDisplayTime;
      this.frameSeenAt = now;
      this.frameNumber = metadata.presentedFrames;
      if (this.running) {
        this.frameCallback = video.requestVideoFrameCallback(onFrame);
      }
    };
    this.frameCallback = video.requestVideoFrameCallback(onFrame);
  }

  /** The capture time of the camera's current frame; null when it was taken already. */
  private nextFrameTime(): number | null {
    const now = performance.now();
    const fresh = now - this.frameSeenAt < FRAME_CALLBACK_FRESH_MS;
    if (fresh && this.frameNumber === this.takenFrameNumber) {
      return null;
    }
    this.takenFrameNumber = this.frameNumber;
    return performance.timeOrigin + (fresh && this.frameTime !== null ? this.frameTime : now);
  }

  /** Sizes the canvas (resizing clears it, so only on a change). */
  private fit(width: number, height: number): void {
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
  }

  private takeJpeg(at: number, onFrame: (frame: CapturedFrame) => void): void {
    this.fit(this.width, this.height);
    this.context.drawImage(this.video, 0, 0, this.width, this.height);
    this.encoding = true;
    encodeJpeg(this.canvas, this.quality)
      .then((jpeg) => {
        if (this.running) {
          onFrame({ jpeg, capturedAt: at });
        }
      })
      // An encoder failure loses this frame only; the next tick tries again.
      .catch(() => undefined)
      .finally(() => {
        this.encoding = false;
      });
  }
}

async function encodeJpeg(
  canvas: OffscreenCanvas | HTMLCanvasElement,
  quality: number,
): Promise<Uint8Array> {
  const blob =
    'convertToBlob' in canvas
      ? await canvas.convertToBlob({ type: 'image/jpeg', quality })
      : await new Promise<Blob>((resolve, reject) =>
          canvas.toBlob(
            (b) => (b ? resolve(b) : reject(new Error('the canvas gave no JPEG'))),
            'image/jpeg',
            quality,
          ),
        );
  return new Uint8Array(await blob.arrayBuffer());
}

function even(n: number): number {
  return Math.max(16, Math.round(n / 2) * 2);
}
