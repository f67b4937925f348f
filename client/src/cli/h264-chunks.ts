import {
  AnnexBAccessUnitSplitter,
  annexBToAvcc,
  avcCFromParameterSets,
  avcCodecString,
  isIdrAccessUnit,
  NalType,
  nalUnitType,
} from '../../../src/protocol/annexb.js';
import { BitReader } from '../../../src/protocol/bit-reader.js';
import { parseSps } from '../../../src/protocol/h264-sps.js';

/** One access unit as a chunk of an `avc1.*` session. */
export interface H264Chunk {
  /** AVCC: NAL units behind 4-byte lengths, parameter sets left to the avcC. */
  data: Uint8Array;
  /** An IDR access unit: header flag bit 0. */
  key: boolean;
}

/** What the `open` of the stream declares, from its first SPS and PPS. */
export interface H264StreamInfo {
  /** `avc1.PPCCLL` of the SPS. */
  codec: string;
  /** The avcC record. */
  description: Uint8Array;
  width: number;
  height: number;
}

/** The stream cannot be (the rest of) one session. */
export class H264StreamError extends Error {
  override name = 'H264StreamError';

  constructor(
    /** `stream_changed`: its parameter sets changed (e.g. a new size); `b_frames`: B slices. */
    readonly code: 'stream_changed' | 'b_frames',
    message: string,
  ) {
    super(message);
  }
}

/** Bytes of a slice NAL unit that hold first_mb_in_slice and slice_type, with room to spare. */
const SLICE_TYPE_BYTES = 16;

/**
 * Whether a slice NAL unit is a B slice (slice_type 1 or 6, ISO/IEC 14496-10 Table 7-6): it
 * predicts from a later picture, so its access unit comes before its capture-order place.
 */
function isBSlice(nal: Uint8Array): boolean {
  const r = new BitReader().reset(nal, 1, Math.min(nal.length, SLICE_TYPE_BYTES), true);
  r.ue(); // first_mb_in_slice
  const sliceType = r.ue();
  // Cut short: the server's checker refuses it with a reason.
  return !r.overrun && sliceType % 5 === 1;
}

/** Slice NAL units whose header starts with first_mb_in_slice and slice_type. */
function isSlice(nal: Uint8Array): boolean {
  const type = nalUnitType(nal);
  return type === NalType.Slice || type === NalType.Idr || type === NalType.PartitionA;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * Turns an H.264 Annex B byte stream, in pieces cut anywhere (a file, stdin from ffmpeg), into the
 * chunks of one `avc1.*` session: access units in AVCC form, IDR ones flagged key. The first IDR
 * access unit's SPS and PPS make the avcC (`info`); access units before it cannot be decoded and
 * are skipped. Parameter sets seen later must be byte-identical to those: a changed SPS (a new
 * size, profile, …) would make chunks the avcC does not describe, so it ends the stream: the
 * chunks before it are handed out, then `error` is set and nothing more is read (one recording
 * holds one configuration; push the rest as a new session). So does an access unit with a B slice:
 * the server records chunks in arrival order at their capture times and refuses B slices, so
 * a stream needs encoding without B-frames (x264: `-bf 0`, or `-tune zerolatency`).
 */
export class H264ChunkReader {
  /** Known once the first IDR access unit with its parameter sets was read. */
  info: H264StreamInfo | null = null;
  /** Access units before the first IDR with its parameter sets: skipped. */
  skipped = 0;
  /** Set when the parameter sets changed or a B slice came: the stream ends before it. */
  error: H264StreamError | null = null;
  private readonly splitter = new AnnexBAccessUnitSplitter();
  private parameterSets: Uint8Array[] = [];
  private read = 0;

  /** Takes the next piece of the stream; returns the chunks it completed. */
  push(piece: Uint8Array): H264Chunk[] {
    return this.take(this.splitter.push(piece));
  }

  /** The stream ended: returns the last chunks. */
  end(): H264Chunk[] {
    return this.take(this.splitter.end());
  }

  private take(accessUnits: Uint8Array[][]): H264Chunk[] {
    const chunks: H264Chunk[] = [];
    for (const au of this.error ? [] : accessUnits) {
      this.read++;
      const sps = au.filter((nal) => nalUnitType(nal) === NalType.Sps);
      const pps = au.filter((nal) => nalUnitType(nal) === NalType.Pps);
      const key = isIdrAccessUnit(au);
      if (this.info === null) {
        if (sps.length === 0 || pps.length === 0 || !key) {
          this.skipped++;
          continue;
        }
        this.parameterSets = [...sps, ...pps];
        this.info = {
          codec: avcCodecString(sps[0]),
          description: avcCFromParameterSets(sps, pps),
          ...sizeOf(sps[0]),
        };
      } else {
        for (const nal of [...sps, ...pps]) {
          if (!this.parameterSets.some((known) => sameBytes(known, nal))) {
            const what = nalUnitType(nal) === NalType.Sps ? 'SPS' : 'PPS';
            this.error = new H264StreamError(
              'stream_changed',
              `access unit ${this.read} carries a new ${what}: one session holds one ` +
                'configuration (push the rest as a new session)',
            );
            return chunks;
          }
        }
      }
      if (au.some((nal) => isSlice(nal) && isBSlice(nal))) {
        this.error = new H264StreamError(
          'b_frames',
          `access unit ${this.read} holds a B slice: chunks are recorded in capture order, ` +
            'encode without B-frames (x264: -bf 0, or -tune zerolatency)',
        );
        return chunks;
      }
      chunks.push({ data: annexBToAvcc(au), key });
    }
    return chunks;
  }
}

/** The picture size an SPS codes, after cropping. */
function sizeOf(sps: Uint8Array): { width: number; height: number } {
  const { width, height } = parseSps(sps);
  return { width, height };
}
