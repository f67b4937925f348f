/**
 * The AudioWorklet processor behind `MicrophoneCapture` (loaded by URL with
 * `audioWorklet.addModule`, never imported): s16le chunks of the microphone's input, each posted
 * to the page with the index of its first frame, the buffer transferred rather than copied.
 */
import { PcmChunker, PCM_PROCESSOR, type PcmProcessorOptions } from './pcm-chunker.js';

// The AudioWorkletGlobalScope, which TypeScript's DOM library does not describe.
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
}
declare function registerProcessor(
  name: string,
  processor: new (options: { processorOptions: PcmProcessorOptions }) => AudioWorkletProcessor,
): void;
/** The context's frame at the start of the render quantum being processed. */
declare const currentFrame: number;

class PcmProcessor extends AudioWorkletProcessor {
  private readonly chunker: PcmChunker;
  private running = true;

  constructor(options: { processorOptions: PcmProcessorOptions }) {
    super();
    const { channels, framesPerChunk } = options.processorOptions;
    this.chunker = new PcmChunker(channels, framesPerChunk, (pcm, firstFrame) =>
      this.port.postMessage({ pcm, firstFrame }, [pcm]),
    );
    this.port.onmessage = () => {
      this.running = false;
    };
  }

  process(inputs: Float32Array[][]): boolean {
    const input = inputs[0] ?? [];
    // Frames are placed by the context's clock, so a gap in the input does not shift later chunks.
    this.chunker.push(input, currentFrame);
    // False lets the node be collected once the page stopped it.
    return this.running;
  }
}

registerProcessor(PCM_PROCESSOR, PcmProcessor);
