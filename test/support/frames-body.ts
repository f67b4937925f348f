import { encodeMediaMessage, Track } from '../../src/protocol/media-header';
import { payloadFor } from './stream-client';

/**
 * An HTTP fallback body: `u32 length` + media message for each seq in [from, to], with pts
 * seq × 100 unless `ptsOf` says otherwise.
 */
export function framesBody(
  from: number,
  to: number,
  ptsOf: (seq: number) => number = (seq) => seq * 100,
): Buffer {
  const parts: Buffer[] = [];
  for (let seq = from; seq <= to; seq++) {
    const message = encodeMediaMessage(Track.Video, seq, ptsOf(seq), payloadFor(seq));
    const length = Buffer.alloc(4);
    length.writeUInt32BE(message.length);
    parts.push(length, message);
  }
  return Buffer.concat(parts);
}

export async function postFrames(
  base: string,
  sessionId: string,
  token: string,
  resumeToken: string,
  body: Buffer,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}/v1/sessions/${sessionId}/frames`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'x-resume-token': resumeToken,
      'content-type': 'application/vnd.framegate.frames',
    },
    body,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
