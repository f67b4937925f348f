import { PCM_PROCESSOR, type PcmChunkMessage, type PcmProcessorOptions } from './pcm-chunker.js';

/** A chunk of PCM s16le (channels interleaved) and the capture time of its first sample. */
export interface CapturedAudio {
  pcm: Uint8Array<ArrayBuffer>;
  /** Epoch ms (`performance.timeOrigin` based). */
  capturedAt: number;
}

export interface MicrophoneCaptureOptions {
  /** Capture from this stream instead of asking `getUserMedia` (which is then not called). */
  stream?: MediaStream;
  /** `getUserMedia` audio constraints (default: echo cancellation and noise suppression on). */
  constraints?: MediaTrackConstraints;
  /** Sample rate of the PCM, as declared in `open.audio` (default 48000). */
  sampleRate?: number;
  /** 1 or 2 (default 1). */
  channels?: 1 | 2;
  /** Length of each audio message (default 100 ms: 10 messages a second). */
  chunkMs?: number;
  /** Where `pcm-worklet.js` is served; by default beside this module. */
  workletUrl?: string | URL;
}

/**
 * The microphone as PCM s16le chunks (track 2), converted in an AudioWorklet off the main thread.
 * The AudioContext runs at the session's declared rate (the browser resamples the microphone).
 * Browsers start an AudioContext suspended without a user gesture: `open` from a click handler,
 * or call `resume()` from one later; chunks flow once it runs.
 */
export class MicrophoneCapture {
  readonly sampleRate: number;
  readonly channels: 1 | 2;
  /** Audio messages per second: what they take of the server's `maxFps`. */
  readonly chunksPerSecond: number;
  private node: AudioWorkletNode | null = null;
  private source: MediaStreamAudioSourceNode | null = null;

  private constructor(
    private readonly context: AudioContext,
    private readonly stream: MediaStream,
    private readonly ownsStream: boolean,
    private readonly framesPerChunk: number,
    channels: 1 | 2,
  ) {
    this.sampleRate = context.sampleRate;
    this.channels = channels;
    this.chunksPerSecond = this.sampleRate / framesPerChunk;
  }

  /** Opens the microphone (asks for permission unless `stream` is given) and the worklet. */
  static async open(options: MicrophoneCaptureOptions = {}): Promise<MicrophoneCapture> {
    const stream =
      options.stream ??
      (await navigator.mediaDevices.getUserMedia({
        audio: options.constraints ?? { echoCancellation: true, noiseSuppression: true },
        video: false,
      }));
    const context = new AudioContext({ sampleRate: options.sampleRate ?? 48_000 });
    try {
      await context.audioWorklet.addModule(
        options.workletUrl ?? new URL('./pcm-worklet.js', import.meta.url),
      );
      const framesPerChunk = Math.round((context.sampleRate * (options.chunkMs ?? 100)) / 1000);
      return new MicrophoneCapture(
        context,
        stream,
        !options.stream,
        framesPerChunk,
        options.channels ?? 1,
      );
    } catch (err) {
      await context.close();
      if (!options.stream) {
        stream.getTracks().forEach((t) => t.stop());
      }
      throw err;
    }
  }

  /** True while the browser holds the AudioContext suspended (no user gesture yet). */
  get suspended(): boolean {
    return this.context.state === 'suspended';
  }

  /** Resumes a suspended AudioContext; call it from a user gesture. */
  resume(): Promise<void> {
    return this.context.resume();
  }

  /** Starts the chunks; each goes to `onChunk`. */
  start(onChunk: (audio: CapturedAudio) => void): void {
    if (this.node) {
      return;
    }
    const processorOptions: PcmProcessorOptions = {
      channels: this.channels,
      framesPerChunk: this.framesPerChunk,
    };
    const node = new AudioWorkletNode(this.context, PCM_PROCESSOR, {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: this.channels,
      channelCountMode: 'explicit',
      processorOptions,
    });
    node.port.onmessage = (event: MessageEvent<PcmChunkMessage>) => {
      const { pcm, firstFrame } = event.data;
      onChunk({ pcm: new Uint8Array(pcm), capturedAt: this.epochOf(firstFrame) });
    };
    this.source = this.context.createMediaStreamSource(this.stream);
    this.source.connect(node);
    // A node that reaches no destination is not processed; it writes nothing, so this is silent.
    node.connect(this.context.destination);
    this.node = node;
    void this.context.resume().catch(() => undefined);
  }

  /** Stops the chunks (a partly filled one is dropped); the microphone stays open. */
  stop(): void {
    const node = this.node;
    this.node = null;
    if (node) {
      node.port.postMessage('stop');
      node.port.onmessage = null;
      node.disconnect();
    }
    this.source?.disconnect();
    this.source = null;
  }

  /** Stops and releases the microphone and the AudioContext. */
  async close(): Promise<void> {
    this.stop();
    if (this.ownsStream) {
      this.stream.getTracks().forEach((t) => t.stop());
    }
    await this.context.close();
  }

  /** The epoch time of a context frame, by the context's own mapping to the page's clock. */
  private epochOf(frame: number): number {
    const { contextTime, performanceTime } = this.context.getOutputTimestamp();
    // Before the context's first output both are 0: the chunk then ended about now.
    const perfMs =
      contextTime !== undefined && performanceTime
        ? performanceTime + (frame / this.sampleRate - contextTime) * 1000
        : performance.now() - (this.framesPerChunk / this.sampleRate) * 1000;
    return performance.timeOrigin + perfMs;
  }
}
