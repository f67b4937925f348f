import type { AudioPacketCheck } from '../../stream/chunk-gate';

/** An Opus identification header (RFC 7845 §5.1), the `description` of an `opus` audio track. */
export interface OpusHead {
  version: number;
  channels: number;
  preSkip: number;
  inputSampleRate: number;
  /** Q7.8 dB. */
  outputGain: number;
  mappingFamily: number;
  /** Opus streams in each packet: 1 for mapping family 0. */
  streamCount: number;
  coupledCount: number;
  /** Output channel to stream channel (mapping families 1 and 255; empty for 0). */
  mapping: Uint8Array;
}

const MAGIC = 'OpusHead';
const HEAD_BYTES = 19;
/** A frame holds at most 1275 bytes (RFC 6716 §3.2.1, R2). */
const MAX_FRAME_BYTES = 1275;
/**
 * The longest packet taken: 48 frames of 1275 bytes. The RFC would allow a few header bytes, and
 * any padding, beyond that; no encoder comes near it (libopus packs at most 6 frames).
 */
const MAX_PACKET_BYTES = MAX_FRAME_BYTES * 48;
/** 120 ms at 48 kHz: the longest a packet may last (RFC 6716 §3.2.5, R5). */
const MAX_PACKET_SAMPLES = 5760;

/**
 * Reads an OpusHead. Throws, saying what is wrong: the magic, a version whose major part is not 0
 * (RFC 7845: 1, and minor versions up to 15 stay compatible), no channels, 3+ channels in mapping
 * family 0, a channel mapping table cut short or naming streams it does not have, a mapping family
 * other than 0, 1 and 255.
 */
export function parseOpusHead(desc: Uint8Array): OpusHead {
  if (desc.length < HEAD_BYTES) {
    throw new Error(`an OpusHead has at least ${HEAD_BYTES} bytes, not ${desc.length}`);
  }
  for (let i = 0; i < MAGIC.length; i++) {
    if (desc[i] !== MAGIC.charCodeAt(i)) {
      throw new Error('the Opus description does not start with "OpusHead"');
    }
  }
  const view = new DataView(desc.buffer, desc.byteOffset, desc.byteLength);
  const version = desc[8];
  const channels = desc[9];
  const mappingFamily = desc[18];
  if (version === 0 || version > 15) {
    throw new Error(`OpusHead version ${version} is not 1 (or a compatible 2 to 15)`);
  }
  if (channels === 0) {
    throw new Error('the OpusHead has no channels');
  }
  const head: OpusHead = {
    version,
    channels,
    preSkip: view.getUint16(10, true),
    inputSampleRate: view.getUint32(12, true),
    outputGain: view.getInt16(16, true),
    mappingFamily,
    streamCount: 1,
    coupledCount: channels - 1,
    mapping: new Uint8Array(0),
  };
  if (mappingFamily === 0) {
    if (channels > 2) {
      throw new Error(`mapping family 0 has 1 or 2 channels, not ${channels}`);
    }
    return head;
  }
  if (mappingFamily !== 1 && mappingFamily !== 255) {
    throw new Error(`Opus channel mapping family ${mappingFamily} is not supported (0, 1, 255)`);
  }
  if (mappingFamily === 1 && channels > 8) {
    throw new Error(`mapping family 1 has 1 to 8 channels, not ${channels}`);
  }
  if (desc.length < HEAD_BYTES + 2 + channels) {
    throw new Error(`the OpusHead's channel mapping table for ${channels} channels is cut short`);
  }
  head.streamCount = desc[19];
  head.coupledCount = desc[20];
  head.mapping = Uint8Array.from(desc.subarray(21, 21 + channels));
  const streamChannels = head.streamCount + head.coupledCount;
  if (head.streamCount === 0 || head.coupledCount > head.streamCount || streamChannels > 255) {
    throw new Error(
      `OpusHead stream count ${head.streamCount}, coupled ${head.coupledCount}: out of range`,
    );
  }
  for (const [channel, index] of head.mapping.entries()) {
    if (index !== 255 && index >= streamChannels) {
      throw new Error(
        `OpusHead maps channel ${channel} to ${index}, beyond its ${streamChannels} decoded channels`,
      );
    }
  }
  return head;
}

/**
 * The checker of an `opus` track's packets. Throws for a multistream head (several Opus streams
 * per packet, self-delimited): the recorder takes mono or stereo, one stream.
 */
export function createOpusChecker(head: OpusHead | null = null): AudioPacketCheck {
  if (head !== null && head.streamCount > 1) {
    throw new Error(
      `Opus with ${head.streamCount} streams per packet (${head.channels} channels) is not supported: send mono or stereo`,
    );
  }
  return new OpusPacketChecker();
}

/** Samples at 48 kHz of one frame, by configuration (RFC 6716 Table 2): SILK, hybrid, CELT. */
const SILK_SAMPLES = [480, 960, 1920, 2880];
const HYBRID_SAMPLES = [480, 960];
const CELT_SAMPLES = [120, 240, 480, 960];

function frameSamples(config: number): number {
  if (config < 12) {
    return SILK_SAMPLES[config & 3];
  }
  return config < 16 ? HYBRID_SAMPLES[config & 1] : CELT_SAMPLES[config & 3];
}

/** Why a packet is refused; the numbers its reason names are in the checker's problem fields. */
type OpusProblem =
  | 'empty'
  | 'too-long'
  | 'frame-over'
  | 'code1-odd'
  | 'code2-length-cut'
  | 'code2-overrun'
  | 'code3-count-cut'
  | 'code3-count'
  | 'code3-padding-cut'
  | 'code3-padding-overrun'
  | 'cbr-split'
  | 'vbr-length-cut'
  | 'vbr-overrun';

/**
 * RFC 6716 §3.1-3.2 on one packet: the TOC byte's frame count code, and requirements R1-R7: at
 * least one byte; frames of at most 1275 bytes; code 1's two frames of equal size; code 2's first
 * length within the packet; code 3's frame count 1-48 lasting at most 120 ms, its padding and
 * VBR lengths within the packet, and CBR frames dividing what is left. As in the H.264 checker,
 * the scan finds the problem and `reason` alone writes sentences.
 */
class OpusPacketChecker implements AudioPacketCheck {
  /** Bytes taken by the frame length `frameLength` read last. */
  private lengthBytes = 0;
  private problemA = 0;
  private problemB = 0;

  check(packet: Buffer): string | null {
    const problem = this.scan(packet);
    return problem === null ? null : this.reason(problem, packet.length);
  }

  private scan(packet: Buffer): OpusProblem | null {
    const n = packet.length;
    if (n === 0) {
      return 'empty';
    }
    if (n > MAX_PACKET_BYTES) {
      return 'too-long';
    }
    const toc = packet[0];
    switch (toc & 3) {
      case 0:
        return this.frameOver(n - 1);
      case 1:
        if ((n - 1) % 2 !== 0) {
          return 'code1-odd';
        }
        return this.frameOver((n - 1) / 2);
      case 2:
        return this.scanCode2(packet, n);
      default:
        return this.scanCode3(packet, n, frameSamples(toc >> 3));
    }
  }

  private frameOver(bytes: number): OpusProblem | null {
    return bytes > MAX_FRAME_BYTES ? this.found('frame-over', bytes, 0) : null;
  }

  /**
   * A frame length (RFC 6716 §3.2.1) at `at`: one byte below 252, else two (first + 4 × second).
   * -1 when the packet ends inside it.
   */
  private frameLength(packet: Buffer, at: number, end: number): number {
    if (at >= end) {
      return -1;
    }
    const first = packet[at];
    if (first < 252) {
      this.lengthBytes = 1;
      return first;
    }
    if (at + 1 >= end) {
      return -1;
    }
    this.lengthBytes = 2;
    return first + 4 * packet[at + 1];
  }

  private scanCode2(packet: Buffer, n: number): OpusProblem | null {
    const first = this.frameLength(packet, 1, n);
    if (first < 0) {
      return 'code2-length-cut';
    }
    const second = n - 1 - this.lengthBytes - first;
    if (second < 0) {
      return this.found('code2-overrun', first, 0);
    }
    return this.frameOver(first) ?? this.frameOver(second);
  }

  private scanCode3(packet: Buffer, n: number, samples: number): OpusProblem | null {
    if (n < 2) {
      return 'code3-count-cut';
    }
    const count = packet[1] & 0x3f;
    const vbr = (packet[1] & 0x80) !== 0;
    const padded = (packet[1] & 0x40) !== 0;
    if (count === 0 || count * samples > MAX_PACKET_SAMPLES) {
      return this.found('code3-count', count, samples);
    }
    let at = 2;
    let padding = 0;
    if (padded) {
      for (;;) {
        if (at >= n) {
          return 'code3-padding-cut';
        }
        const byte = packet[at++];
        // 255 means 254 bytes of padding and another length byte (RFC 6716 §3.2.5).
        padding += byte === 255 ? 254 : byte;
        if (byte !== 255) {
          break;
        }
      }
    }
    const end = n - padding;
    if (end < at) {
      return this.found('code3-padding-overrun', padding, 0);
    }
    if (!vbr) {
      const rest = end - at;
      if (rest % count !== 0) {
        return this.found('cbr-split', rest, count);
      }
      return this.frameOver(rest / count);
    }
    let sum = 0;
    for (let i = 0; i < count - 1; i++) {
      const length = this.frameLength(packet, at, end);
      if (length < 0) {
        return this.found('vbr-length-cut', i + 1, count - 1);
      }
      at += this.lengthBytes;
      sum += length;
    }
    const last = end - at - sum;
    if (last < 0) {
      return this.found('vbr-overrun', sum, 0);
    }
    return this.frameOver(last);
  }

  private found(problem: OpusProblem, a: number, b: number): OpusProblem {
    this.problemA = a;
    this.problemB = b;
    return problem;
  }

  private reason(problem: OpusProblem, n: number): string {
    const a = this.problemA;
    const b = this.problemB;
    switch (problem) {
      case 'empty':
        return 'empty Opus packet';
      case 'too-long':
        return `an Opus packet of ${n} bytes (at most ${MAX_PACKET_BYTES})`;
      case 'frame-over':
        return `an Opus frame of ${a} bytes (at most ${MAX_FRAME_BYTES})`;
      case 'code1-odd':
        return `an Opus code 1 packet holds two frames of equal size, not ${n - 1} bytes`;
      case 'code2-length-cut':
        return 'an Opus code 2 packet ends inside its first frame length';
      case 'code2-overrun':
        return `an Opus code 2 packet's first frame of ${a} bytes overruns it (${n} bytes)`;
      case 'code3-count-cut':
        return 'an Opus code 3 packet ends before its frame count';
      case 'code3-count':
        return `an Opus code 3 packet of ${a} frames of ${b / 48} ms (1 frame to 120 ms)`;
      case 'code3-padding-cut':
        return 'an Opus code 3 packet ends inside its padding length';
      case 'code3-padding-overrun':
        return `an Opus code 3 packet's padding of ${a} bytes overruns it (${n} bytes)`;
      case 'cbr-split':
        return `an Opus CBR code 3 packet: ${a} bytes do not make ${b} frames of equal size`;
      case 'vbr-length-cut':
        return `an Opus VBR code 3 packet ends inside frame length ${a} of ${b}`;
      case 'vbr-overrun':
        return `an Opus VBR code 3 packet's frame lengths (${a} bytes) overrun it (${n} bytes)`;
    }
  }
}
