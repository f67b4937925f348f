/** Size of the binary media header (spec section 3). */
export const MEDIA_HEADER_BYTES = 12;
export const MEDIA_VERSION = 1;

/** The header's fields, big-endian, for documents that describe it (AsyncAPI, docs). */
export const MEDIA_HEADER_LAYOUT = [
  { name: 'version', offset: 0, bytes: 1, meaning: `always ${MEDIA_VERSION}` },
  {
    name: 'track',
    offset: 1,
    bytes: 1,
    meaning: "1 video (a JPEG, or one chunk of the session's codec), 2 audio (PCM s16le or Opus)",
  },
  { name: 'flags', offset: 2, bytes: 2, meaning: 'bit 0: key frame (compressed video); others 0' },
  { name: 'seq', offset: 4, bytes: 4, meaning: 'unsigned, from 1, +1 per message, both tracks' },
  { name: 'pts', offset: 8, bytes: 4, meaning: 'unsigned, capture time in ms from session start' },
] as const;

export enum Track {
  Video = 1,
  Audio = 2,
}

/** Header flag bit 0: the chunk is a key frame (a decoder can start from it). */
export const FLAG_KEY = 0x0001;
/**
 * Header flag bit 15, never on the wire: a spool record that holds only the header of a chunk the
 * server refused (`bad_frame`). Its seq stays taken, so the spool's sequence has no hole, and the
 * recorders skip it.
 */
export const FLAG_REFUSED = 0x8000;

/** A parsed media header; `payload` starts at MEDIA_HEADER_BYTES of the message. */
export interface MediaHeader {
  track: Track;
  seq: number;
  pts: number;
  /** Flag bit 0: a key frame. Always false on audio and on JPEG sessions' images. */
  key: boolean;
}

/** A spool record's header: a media header, or the tombstone of a refused chunk. */
export interface StoredHeader extends MediaHeader {
  refused: boolean;
}

/** Why a binary message was refused before it reached the session. */
export type MediaHeaderProblem =
  'too_short' | 'bad_version' | 'bad_track' | 'bad_flags' | 'bad_seq';

/**
 * Reads the 12-byte big-endian header. Returns a problem string instead of throwing: this runs for
 * every frame, and exceptions are slow.
 */
export function readMediaHeader(message: Buffer): MediaHeader | MediaHeaderProblem {
  if (message.length <= MEDIA_HEADER_BYTES) {
    return 'too_short';
  }
  if (message[0] !== MEDIA_VERSION) {
    return 'bad_version';
  }
  const track = message[1];
  if (track !== 1 && track !== 2) {
    return 'bad_track';
  }
  const flags = message.readUInt16BE(2);
  if (flags > FLAG_KEY || (flags === FLAG_KEY && track !== 1)) {
    return 'bad_flags';
  }
  const seq = message.readUInt32BE(4);
  if (seq === 0) {
    return 'bad_seq';
  }
  return {
    track: track === 1 ? Track.Video : Track.Audio,
    seq,
    pts: message.readUInt32BE(8),
    key: flags === FLAG_KEY,
  };
}

/**
 * Reads a spool record's header: what `readMediaHeader` accepts, and the tombstones of refused
 * chunks (FLAG_REFUSED, no payload).
 */
export function readStoredHeader(message: Buffer): StoredHeader | MediaHeaderProblem {
  if (message.length === MEDIA_HEADER_BYTES && (message.readUInt16BE(2) & FLAG_REFUSED) !== 0) {
    const seq = message.readUInt32BE(4);
    const track = message[1];
    if (message[0] !== MEDIA_VERSION || (track !== 1 && track !== 2) || seq === 0) {
      return 'bad_version';
    }
    return {
      track: track === 1 ? Track.Video : Track.Audio,
      seq,
      pts: message.readUInt32BE(8),
      key: false,
      refused: true,
    };
  }
  const header = readMediaHeader(message);
  return typeof header === 'string' ? header : { ...header, refused: false };
}

/** The spool record of a refused chunk: its header alone, flagged FLAG_REFUSED. */
export function refusedRecord(message: Buffer): Buffer {
  const record = Buffer.allocUnsafe(MEDIA_HEADER_BYTES);
  message.copy(record, 0, 0, MEDIA_HEADER_BYTES);
  record.writeUInt16BE(FLAG_REFUSED, 2);
  return record;
}

/**
 * How far a frame's `pts` may run ahead of the highest `pts` the session stored before it (for the
 * first frame: ahead of 0, the session's first frame by definition). A capture pause (camera off,
 * app in the background) stays well under it; a wrapped or garbage u32 (up to 49.7 days) does not.
 */
export const PTS_MAX_FORWARD_MS = 10 * 60 * 1000;
/**
 * How far a frame's `pts` may lie behind the highest stored `pts`: audio and video captured at the
 * same time may be sent slightly out of order, but time does not run back by more.
 */
export const PTS_MAX_BACKWARD_MS = 10 * 1000;

/**
 * The pts rule (docs/protocol.md, "Media, sequence and acks"): `pts` never wraps, and a frame is
 * refused when its `pts` is more than PTS_MAX_FORWARD_MS after, or PTS_MAX_BACKWARD_MS before, the
 * highest `pts` stored so far (0 before the first frame). Per frame: two comparisons.
 */
export function ptsPlausible(highestPts: number, pts: number): boolean {
  return pts - highestPts <= PTS_MAX_FORWARD_MS && highestPts - pts <= PTS_MAX_BACKWARD_MS;
}

/** The `message` of the `error` that refuses a frame by the pts rule (built only on that path). */
export function ptsRefusal(seq: number, pts: number): string {
  return (
    `pts ${pts} of seq ${seq} is implausible: at most ${PTS_MAX_FORWARD_MS} ms after or ` +
    `${PTS_MAX_BACKWARD_MS} ms before the highest pts stored; not stored, resend from seq ${seq}`
  );
}

/**
 * Writes the 12-byte big-endian header at the start of `target`. Byte by byte on a plain
 * Uint8Array, so that browsers (which have no Buffer) and Node share one codec.
 */
export function writeMediaHeader(
  target: Uint8Array,
  track: Track,
  seq: number,
  pts: number,
  flags = 0,
): void {
  target[0] = MEDIA_VERSION;
  target[1] = track;
  target[2] = flags >>> 8;
  target[3] = flags;
  target[4] = seq >>> 24;
  target[5] = seq >>> 16;
  target[6] = seq >>> 8;
  target[7] = seq;
  target[8] = pts >>> 24;
  target[9] = pts >>> 16;
  target[10] = pts >>> 8;
  target[11] = pts;
}

/** The `seq` of a media message (big-endian u32 at byte 4), from any Uint8Array. */
export function readMediaSeq(message: Uint8Array): number {
  return ((message[4] << 24) >>> 0) + (message[5] << 16) + (message[6] << 8) + message[7];
}

/** Builds a media message (Node: a Buffer); used by tests and benchmarks. */
export function encodeMediaMessage(
  track: Track,
  seq: number,
  pts: number,
  payload: Buffer,
  flags = 0,
): Buffer {
  const message = Buffer.allocUnsafe(MEDIA_HEADER_BYTES + payload.length);
  writeMediaHeader(message, track, seq, pts, flags);
  payload.copy(message, MEDIA_HEADER_BYTES);
  return message;
}
