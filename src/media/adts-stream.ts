import { appendGrowing } from './grow-buffer';

/** Sampling frequencies by their 4-bit index (ISO 14496-3, 1.6.3.4). */
export const AAC_SAMPLE_RATES = [
  96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
  7_350,
] as const;

/** MPEG-4 audio object type of AAC-LC, what ffmpeg's `aac` encoder produces by default. */
export const AAC_LC = 2;

/** Samples per channel in one AAC-LC frame. */
const SAMPLES_PER_FRAME = 1024;
const MIN_HEADER_BYTES = 7;
/** First capacity of the splitter's work buffer; it doubles when a frame outgrows it. */
const INITIAL_CAPACITY = 16 * 1024;

export interface AdtsFrameInfo {
  sampleRate: number;
  channels: number;
  /** Samples per channel in this frame. */
  samples: number;
}

/**
 * Splits an ADTS byte stream into raw AAC frames (header and CRC stripped). Chunks may be cut
 * anywhere. Each header carries its frame's length, so a frame is emitted as soon as it is whole.
 * Throws on a lost sync word: ffmpeg's output never has one, so it means a broken pipe.
 */
export class AdtsSplitter {
  private buf: Buffer = Buffer.allocUnsafe(INITIAL_CAPACITY);
  private length = 0;

  constructor(private readonly onFrame: (frame: Uint8Array, info: AdtsFrameInfo) => void) {}

  push(chunk: Buffer): void {
    this.append(chunk);
    let at = 0;
    while (this.length - at >= MIN_HEADER_BYTES) {
      const b = this.buf;
      if (b[at] !== 0xff || (b[at + 1] & 0xf0) !== 0xf0) {
        throw new Error('ADTS sync word missing at a frame start');
      }
      const headerLength = b[at + 1] & 0x01 ? 7 : 9;
      const frameLength = ((b[at + 3] & 0x03) << 11) | (b[at + 4] << 3) | (b[at + 5] >> 5);
      if (frameLength <= headerLength) {
        throw new Error(`ADTS frame length ${frameLength} is shorter than its header`);
      }
      if (this.length - at < frameLength) {
        break;
      }
      const rateIndex = (b[at + 2] >> 2) & 0x0f;
      const channels = ((b[at + 2] & 0x01) << 2) | (b[at + 3] >> 6);
      const blocks = (b[at + 6] & 0x03) + 1;
      if (blocks !== 1 || channels === 0 || rateIndex >= AAC_SAMPLE_RATES.length) {
        // Several raw blocks, a PCE channel layout or an escape rate: ffmpeg's encoder writes none.
        throw new Error(
          `unsupported ADTS frame (blocks ${blocks}, channels ${channels}, rate index ${rateIndex})`,
        );
      }
      this.onFrame(Buffer.from(b.subarray(at + headerLength, at + frameLength)), {
        sampleRate: AAC_SAMPLE_RATES[rateIndex],
        channels,
        samples: SAMPLES_PER_FRAME,
      });
      at += frameLength;
    }
    if (at > 0) {
      this.buf.copyWithin(0, at, this.length);
      this.length -= at;
    }
  }

  /** Bytes left over at end of stream: a torn last frame (ffmpeg never leaves one). */
  get pendingBytes(): number {
    return this.length;
  }

  private append(chunk: Buffer): void {
    this.buf = appendGrowing(this.buf, this.length, chunk);
    this.length += chunk.length;
  }
}

/**
 * The 2-byte AudioSpecificConfig (ISO 14496-3, 1.6.2.1) a decoder needs for raw AAC frames:
 * 5 bits object type, 4 bits sampling frequency index, 4 bits channel configuration.
 */
export function audioSpecificConfig(
  objectType: number,
  sampleRateIndex: number,
  channels: number,
): Uint8Array {
  return Uint8Array.of(
    (objectType << 3) | (sampleRateIndex >> 1),
    ((sampleRateIndex & 0x01) << 7) | (channels << 3),
  );
}
