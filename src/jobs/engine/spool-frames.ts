import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageHeader } from '../../media/image-header';
import { readMediaHeader, MEDIA_HEADER_BYTES, Track } from '../../protocol/media-header';
import { readSpool } from '../../spool/spool';
import { BadInputError } from './errors';
import { MAX_IMAGE_DURATION_MS, MAX_IMAGES } from './limits';

export interface SpoolFrameLimits {
  /** More video frames than this: BadInputError (default MAX_IMAGES). */
  maxFrames?: number;
  /** More JPEG bytes than this in all: BadInputError. */
  maxBytes: number;
  /** Display time of the last frame: the session's nominal frame interval (1000 / fps). */
  lastDurationMs: number;
}

export interface SpoolFrames {
  /** File names inside `destDir`, in display order. */
  files: string[];
  /** One per file: the next kept frame's pts minus this one's; the last is `lastDurationMs`. */
  durationsMs: number[];
  /** Video frames left out: not an image, or a pts not after the previous kept frame's. */
  skipped: number;
}

const EXTENSIONS = { jpeg: 'jpg', png: 'png', webp: 'webp' } as const;

/**
 * Writes a session's stored video frames (the spool's track-1 messages: src/spool/spool.ts,
 * header in src/protocol/media-header.ts) as image files into `destDir` (created; inside a job's
 * folder), named `frame-000001.jpg` on, with their display times from the differences of their
 * capture pts. A frame whose pts is not after the last kept one cannot be shown for a positive
 * time (the protocol lets pts step back a little) and is skipped; a time longer than
 * MAX_IMAGE_DURATION_MS (a long pause) is cut to it. Only the intact records before a torn tail
 * are read, as everywhere else.
 */
export async function framesFromSpool(
  spoolPath: string,
  destDir: string,
  limits: SpoolFrameLimits,
): Promise<SpoolFrames> {
  const maxFrames = limits.maxFrames ?? MAX_IMAGES;
  await mkdir(destDir, { recursive: true });
  const files: string[] = [];
  const pts: number[] = [];
  let bytes = 0;
  let skipped = 0;
  for await (const record of readSpool(spoolPath)) {
    const header = readMediaHeader(record.message);
    if (typeof header === 'string' || header.track !== Track.Video) {
      continue;
    }
    const payload = record.message.subarray(MEDIA_HEADER_BYTES);
    const image = imageHeader(payload);
    if (!image || (pts.length > 0 && header.pts <= pts[pts.length - 1])) {
      skipped++;
      continue;
    }
    if (files.length >= maxFrames) {
      throw new BadInputError(`the session stored more than ${maxFrames} video frames`);
    }
    bytes += payload.length;
    if (bytes > limits.maxBytes) {
      throw new BadInputError(`the session's video frames exceed ${limits.maxBytes} bytes`);
    }
    const name = `frame-${String(files.length + 1).padStart(6, '0')}.${EXTENSIONS[image.format]}`;
    await writeFile(join(destDir, name), payload);
    files.push(name);
    pts.push(header.pts);
  }
  if (files.length === 0) {
    throw new BadInputError('the session stored no video frames');
  }
  const durationsMs = pts.map((p, i) =>
    Math.min(MAX_IMAGE_DURATION_MS, i + 1 < pts.length ? pts[i + 1] - p : limits.lastDurationMs),
  );
  return { files, durationsMs, skipped };
}
