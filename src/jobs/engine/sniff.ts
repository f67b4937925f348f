import type { FileHandle } from 'node:fs/promises';

/**
 * The demuxers an input may be read with, and the `format_name` ffprobe reports for each. Nothing
 * else: no playlist (hls, dash), no list (concat), no demuxer that follows references to other
 * files, no image2 (it expands `%d` patterns and globs). The demuxer is chosen here from the
 * file's first bytes and passed to ffprobe and ffmpeg with `-f`, so content cannot switch it.
 */
export const ALLOWED_DEMUXERS = {
  mov: 'mov,mp4,m4a,3gp,3g2,mj2',
  matroska: 'matroska,webm',
  wav: 'wav',
  mp3: 'mp3',
  aac: 'aac',
  ogg: 'ogg',
  jpeg_pipe: 'jpeg_pipe',
  png_pipe: 'png_pipe',
  webp_pipe: 'webp_pipe',
} as const;
export type Demuxer = keyof typeof ALLOWED_DEMUXERS;

/** Image demuxers: one picture, no duration. */
export const IMAGE_DEMUXERS: ReadonlySet<Demuxer> = new Set(['jpeg_pipe', 'png_pipe', 'webp_pipe']);

/** Bytes read to recognise a file. */
export const SNIFF_BYTES = 64;

/** ISO BMFF top-level boxes a file may start with (QuickTime files may lack `ftyp`). */
const MOV_FIRST_BOXES = new Set(['ftyp', 'moov', 'mdat', 'free', 'skip', 'wide', 'pnot']);

/** The demuxer for a file's first bytes, or null when it is none of the allowed kinds. */
export function sniffDemuxer(head: Buffer): Demuxer | null {
  if (head.length >= 12 && MOV_FIRST_BOXES.has(head.toString('latin1', 4, 8))) {
    return 'mov';
  }
  if (head.length >= 4 && head.readUInt32BE(0) === 0x1a45dfa3) {
    return 'matroska';
  }
  if (head.length >= 12 && head.toString('latin1', 0, 4) === 'RIFF') {
    const kind = head.toString('latin1', 8, 12);
    return kind === 'WAVE' ? 'wav' : kind === 'WEBP' ? 'webp_pipe' : null;
  }
  if (head.length >= 4 && head.toString('latin1', 0, 4) === 'OggS') {
    return 'ogg';
  }
  if (
    head.length >= 8 &&
    head.readUInt32BE(0) === 0x89504e47 &&
    head.readUInt32BE(4) === 0x0d0a1a0a
  ) {
    return 'png_pipe';
  }
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) {
    return 'jpeg_pipe';
  }
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'ID3') {
    // An ID3v2 tag: MP3 (ADTS AAC files rarely carry one; ffprobe's check below decides).
    return 'mp3';
  }
  if (head.length >= 2 && head[0] === 0xff && (head[1] & 0xe0) === 0xe0) {
    // An MPEG audio sync word: layer bits 00 are ADTS (AAC), anything else MPEG-1/2 audio.
    return (head[1] & 0x06) === 0 ? 'aac' : 'mp3';
  }
  return null;
}

/**
 * Whether an ISO BMFF (MP4/MOV) file's top-level boxes reach exactly its end. A file cut short
 * inside its `mdat` still probes fine when its `moov` came first (every sample is indexed there),
 * and ffmpeg would then stop early, quietly; the box sizes tell. Returns the problem, or null.
 */
export async function movStructureProblem(fh: FileHandle, size: number): Promise<string | null> {
  const header = Buffer.alloc(16);
  let offset = 0;
  let boxes = 0;
  let sawMoov = false;
  while (offset < size) {
    if (++boxes > 10_000) {
      return 'has too many top-level boxes';
    }
    if (size - offset < 8) {
      return `is cut short (${size - offset} stray bytes at its end)`;
    }
    const { bytesRead } = await fh.read(header, 0, 16, offset);
    let boxSize = header.readUInt32BE(0);
    const type = header.toString('latin1', 4, 8);
    if (boxSize === 1) {
      if (bytesRead < 16) {
        return 'is cut short inside a box header';
      }
      boxSize = Number(header.readBigUInt64BE(8));
    } else if (boxSize === 0) {
      // "To the end of the file": only the last box may say so.
      boxSize = size - offset;
    }
    if (boxSize < 8) {
      return `has a malformed '${printable(type)}' box`;
    }
    if (offset + boxSize > size) {
      return `is cut short: its '${printable(type)}' box needs ${offset + boxSize - size} more bytes`;
    }
    sawMoov ||= type === 'moov';
    offset += boxSize;
  }
  return sawMoov ? null : "has no 'moov' box (the index of its samples)";
}

/**
 * Whether a Matroska file's Segment (when its size is known; a live stream's is not) fits the
 * file. Returns the problem, or null.
 */
export async function matroskaStructureProblem(
  fh: FileHandle,
  size: number,
): Promise<string | null> {
  const head = Buffer.alloc(64);
  const { bytesRead } = await fh.read(head, 0, 64, 0);
  let at = 4;
  const ebmlSize = readVint(head, at, bytesRead);
  if (!ebmlSize) {
    return 'has a malformed EBML header';
  }
  at += ebmlSize.length + ebmlSize.value;
  if (at + 4 > size) {
    return 'is cut short after its EBML header';
  }
  const seg = Buffer.alloc(12);
  const got = (await fh.read(seg, 0, 12, at)).bytesRead;
  if (got < 5 || seg.readUInt32BE(0) !== 0x18538067) {
    return 'has no Segment after its EBML header';
  }
  const segSize = readVint(seg, 4, got);
  if (!segSize) {
    return 'has a malformed Segment size';
  }
  if (!segSize.unknown && at + 4 + segSize.length + segSize.value > size) {
    return `is cut short: its Segment needs ${at + 4 + segSize.length + segSize.value - size} more bytes`;
  }
  return null;
}

/** An EBML variable-size integer; `unknown` when all its value bits are 1. */
function readVint(
  b: Buffer,
  at: number,
  end: number,
): { value: number; length: number; unknown: boolean } | null {
  if (at >= end) {
    return null;
  }
  const first = b[at];
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) {
    length++;
  }
  if (length > 8 || at + length > end) {
    return null;
  }
  let value = first & (0xff >> length);
  let allOnes = value === 0xff >> length;
  for (let i = 1; i < length; i++) {
    value = value * 256 + b[at + i];
    allOnes &&= b[at + i] === 0xff;
  }
  return { value, length, unknown: allOnes };
}

function printable(type: string): string {
  return type.replace(/[^\x20-\x7e]/g, '?');
}
