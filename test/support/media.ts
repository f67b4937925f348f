import sharp from 'sharp';
import { locateTool } from '../../src/media/ffmpeg-locator';
import { probeRecording } from '../../src/media/prober';

/** Distinct JPEG frames of a size, for streaming tests (content varies, so the encoder works). */
export async function jpegFrames(width: number, height: number, count = 10): Promise<Buffer[]> {
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      sharp({
        create: {
          width,
          height,
          channels: 3,
          background: { r: (i * 37) % 256, g: (i * 91) % 256, b: (i * 53) % 256 },
        },
      })
        .composite([
          {
            input: Buffer.from(
              `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><circle cx="${(i * width) / count}" cy="${height / 2}" r="${height / 5}" fill="white"/></svg>`,
            ),
          },
        ])
        .jpeg({ quality: 80 })
        .toBuffer(),
    ),
  );
}

/** `seconds` of 16-bit little-endian PCM sine at `rate`, as one buffer. */
export function pcmSine(seconds: number, rate: number, channels = 1): Buffer {
  const samples = Math.round(seconds * rate);
  const b = Buffer.alloc(samples * channels * 2);
  for (let i = 0; i < samples; i++) {
    const v = Math.round(Math.sin((2 * Math.PI * 440 * i) / rate) * 8000);
    for (let c = 0; c < channels; c++) {
      b.writeInt16LE(v, (i * channels + c) * 2);
    }
  }
  return b;
}

export function probe(path: string) {
  return probeRecording(path, locateTool('ffprobe', undefined).path);
}

/** `opened.media` of a JPEG session without audio under the test configuration's defaults. */
export const JPEG_MEDIA = {
  video: {
    codec: 'jpeg',
    maxWidth: 1920,
    maxHeight: 1080,
    maxKbps: 16_000,
    keyframeIntervalMs: 5_000,
  },
  audio: null,
};
