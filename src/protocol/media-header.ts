/** Size of the binary media header (spec section 3). */
export const MEDIA_HEADER_BYTES = 12;
export const MEDIA_VERSION = 1;

export enum Track {
  Video = 1,
  Audio = 2,
}

/** A parsed media header; `payload` starts at MEDIA_HEADER_BYTES of the message. */
export interface MediaHeader {
  track: Track;
  seq: number;
  pts: number;
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
  if (message.readUInt16BE(2) !== 0) {
    return 'bad_flags';
  }
  const seq = message.readUInt32BE(4);
  if (seq === 0) {
    return 'bad_seq';
  }
  return { track: track === 1 ? Track.Video : Track.Audio, seq, pts: message.readUInt32BE(8) };
}

/** Builds a media message; used by the SDK, tests and benchmarks. */
export function encodeMediaMessage(
  track: Track,
  seq: number,
  pts: number,
  payload: Buffer,
): Buffer {
  const message = Buffer.allocUnsafe(MEDIA_HEADER_BYTES + payload.length);
  message[0] = MEDIA_VERSION;
  message[1] = track;
  message.writeUInt16BE(0, 2);
  message.writeUInt32BE(seq, 4);
  message.writeUInt32BE(pts, 8);
  payload.copy(message, MEDIA_HEADER_BYTES);
  return message;
}
