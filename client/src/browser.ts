import { FramegateClient, type ClientOptions } from './client.js';
import { browserSocketFactory } from './browser-socket.js';
import { IndexedDbOutboxStore } from './indexeddb-outbox.store.js';

export * from './index.js';
export { browserSocketFactory } from './browser-socket.js';
export { IndexedDbOutboxStore } from './indexeddb-outbox.store.js';
export {
  AdaptiveCapture,
  type AdaptDecision,
  type AdaptiveCaptureOptions,
  type AdaptReason,
  type CaptureSample,
  type CaptureSettings,
} from './capture/adaptive-capture.js';
export {
  CameraCapture,
  type CameraCaptureOptions,
  type CapturedFrame,
  type CapturedVideoFrame,
} from './capture/camera-capture.js';
export {
  captureSettings,
  CaptureSession,
  sendText,
  type CaptureOpenOptions,
  type CaptureSessionEvents,
  type CaptureSessionOptions,
  type TakenMedia,
} from './capture/capture-session.js';
export {
  VideoChunkEncoder,
  type EncodedVideoChunkData,
  type VideoChunkEncoderEvents,
  type VideoChunkEncoderSettings,
} from './capture/video-chunk-encoder.js';
export { VIDEO_CODEC_CHOICES, type VideoCodecChoice } from './capture/video-codec.js';
export {
  OPUS_BITRATE,
  OpusChunkEncoder,
  type EncodedAudioChunkData,
  type OpusChunkEncoderEvents,
} from './capture/opus-chunk-encoder.js';
export {
  MicrophoneCapture,
  type CapturedAudio,
  type MicrophoneCaptureOptions,
} from './capture/microphone-capture.js';

export interface BrowserClientOptions extends Omit<ClientOptions, 'socket' | 'outbox'> {
  /**
   * The IndexedDB database of the persistent outbox (default `framegate-outbox`); `false` keeps
   * the outbox in memory (frames are then lost with the page).
   */
  outboxName?: string | false;
}

/** A client for browsers: tickets from `getToken`, the global WebSocket, an IndexedDB outbox. */
export function createBrowserClient(options: BrowserClientOptions): FramegateClient {
  const { outboxName, ...rest } = options;
  return new FramegateClient({
    ...rest,
    socket: browserSocketFactory,
    outbox: outboxName === false ? undefined : new IndexedDbOutboxStore(outboxName),
  });
}
