/** The name the AudioWorklet processor (pcm-worklet.ts) is registered under. */
export const PCM_PROCESSOR = 'framegate-pcm';

/** What `MicrophoneCapture` passes to the processor as `processorOptions`. */
export interface PcmProcessorOptions {
  channels: 1 | 2;
  framesPerChunk: number;
}

/** What the processor posts for each chunk. */
export interface PcmChunkMessage {
  /** s16le, channels interleaved: a track 2 payload. */
  pcm: ArrayBuffer;
  /** The audio context's frame index of the chunk's first sample. */
  firstFrame: number;
}

/**
 * Turns the Web Audio API's float samples (one Float32Array per channel, 128 frames per render
 * quantum) into PCM s16le chunks of a fixed number of frames (shorter before a gap in the input),
 * channels interleaved: the payload of an audio (track 2) message. Runs inside the AudioWorklet, so it allocates only one chunk at a
 * time, which it hands over (transfers) when full.
 */
export class PcmChunker {
  private chunk: DataView;
  private filled = 0;
  /** Frame index of the first frame of the chunk being filled. */
  private chunkStart = 0;
  /** The frame index the next pushed frame is expected at. */
  private framesSeen = 0;

  constructor(
    private readonly channels: 1 | 2,
    private readonly framesPerChunk: number,
    private readonly onChunk: (pcm: ArrayBuffer, firstFrame: number) => void,
  ) {
    this.chunk = this.newChunk();
  }

  /**
   * Adds one block of input, whose first frame is `atFrame` (the AudioWorklet's `currentFrame`;
   * by default the frames pushed so far). A missing channel (a mono source into a stereo session)
   * repeats the first; no input at all (the source stopped) adds nothing.
   */
  push(input: readonly Float32Array[], atFrame: number = this.framesSeen): void {
    if (input.length === 0) {
      return;
    }
    if (this.filled > 0 && atFrame !== this.framesSeen) {
      // A gap (or a jump) in the input: the chunk so far goes out short, so that every chunk is
      // contiguous in time and the next one is dated where its frames really are.
      const short = (this.chunk.buffer as ArrayBuffer).slice(0, this.filled * this.channels * 2);
      this.filled = 0;
      this.onChunk(short, this.chunkStart);
    }
    this.framesSeen = atFrame;
    const frames = input[0].length;
    for (let i = 0; i < frames; i++) {
      if (this.filled === 0) {
        this.chunkStart = atFrame + i;
      }
      for (let c = 0; c < this.channels; c++) {
        const sample = (input[c] ?? input[0])[i];
        // Clamped, then scaled asymmetrically: -1 → -32768, 1 → 32767.
        const s = sample < -1 ? -1 : sample > 1 ? 1 : sample;
        this.chunk.setInt16(
          (this.filled * this.channels + c) * 2,
          s < 0 ? s * 0x8000 : s * 0x7fff,
          true,
        );
      }
      this.framesSeen++;
      if (++this.filled === this.framesPerChunk) {
        const full = this.chunk.buffer as ArrayBuffer;
        this.chunk = this.newChunk();
        this.filled = 0;
        this.onChunk(full, this.chunkStart);
      }
    }
  }

  private newChunk(): DataView {
    return new DataView(new ArrayBuffer(this.framesPerChunk * this.channels * 2));
  }
}
