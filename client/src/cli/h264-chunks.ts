import {
  AnnexBAccessUnitSplitter,
  annexBToAvcc,
  avcCFromParameterSets,
  avcCodecString,
  isIdrAccessUnit,
  NalType,
  nalUnitType,
} from '../../../src/protocol/annexb.js';
import { spsSize } from './h264-sps.js';

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

/** The stream cannot be one session: its parameter sets changed (e.g. a new size). */
export class H264StreamError extends Error {
  override name = 'H264StreamError';
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
 * holds one configuration; push the rest as a new session).
 */
export class H264ChunkReader {
  /** Known once the first IDR access unit with its parameter sets was read. */
  info: H264StreamInfo | null = null;
  /** Access units before the first IDR with its parameter sets: skipped. */
  skipped = 0;
  /** Set when the parameter sets changed: the stream ends before that access unit. */
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
          ...spsSize(sps[0]),
        };
      } else {
        for (const nal of [...sps, ...pps]) {
          if (!this.parameterSets.some((known) => sameBytes(known, nal))) {
            const what = nalUnitType(nal) === NalType.Sps ? 'SPS' : 'PPS';
            this.error = new H264StreamError(
              `access unit ${this.read} carries a new ${what}: one session holds one ` +
                'configuration (push the rest as a new session)',
            );
            return chunks;
          }
        }
      }
      chunks.push({ data: annexBToAvcc(au), key });
    }
    return chunks;
  }
}
