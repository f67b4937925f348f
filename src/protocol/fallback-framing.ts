/** Content type of `POST /v1/sessions/{id}/frames` bodies (spec section 6). */
export const FRAMES_CONTENT_TYPE = 'application/vnd.framegate.frames';

/** Each media message of a fallback body is preceded by its length as a big-endian u32. */
export const FRAME_LENGTH_BYTES = 4;

/**
 * A fallback body: `u32 length` (big-endian) + message, for each message in order. Plain
 * Uint8Array so that browsers (no Buffer) and Node share it.
 */
export function encodeFramesBody(messages: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const m of messages) {
    total += FRAME_LENGTH_BYTES + m.length;
  }
  const body = new Uint8Array(total);
  let offset = 0;
  for (const m of messages) {
    const n = m.length;
    body[offset] = n >>> 24;
    body[offset + 1] = n >>> 16;
    body[offset + 2] = n >>> 8;
    body[offset + 3] = n;
    body.set(m, offset + FRAME_LENGTH_BYTES);
    offset += FRAME_LENGTH_BYTES + n;
  }
  return body;
}
