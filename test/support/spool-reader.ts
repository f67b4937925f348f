import { join } from 'node:path';
import { readMediaHeader } from '../../src/protocol/media-header';
import { readSpool } from '../../src/spool/spool';

export interface SpooledFrame {
  seq: number;
  pts: number;
  track: number;
  /** Header flag bit 0: a compressed key frame. */
  key: boolean;
  payload: Buffer;
}

/** Every intact record of a session's spool, decoded. */
export async function spooledFrames(dataDir: string, sessionId: string): Promise<SpooledFrame[]> {
  const frames: SpooledFrame[] = [];
  for await (const record of readSpool(join(dataDir, 'spool', `${sessionId}.spool`))) {
    const header = readMediaHeader(record.message);
    if (typeof header === 'string') {
      throw new Error(`bad header in spool: ${header}`);
    }
    frames.push({ ...header, payload: record.message.subarray(12) });
  }
  return frames;
}
