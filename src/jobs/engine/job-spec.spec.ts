import { z } from 'zod';
import { engineJobSchema, jobSpecSchema } from './job-spec';

const parse = (spec: unknown) => engineJobSchema.safeParse(spec);
const single = { file: 'in/a.mp4' };

describe('job specs', () => {
  it('accepts each job type with its defaults applied', () => {
    expect(parse({ type: 'transcode', input: single }).data).toEqual({
      type: 'transcode',
      input: single,
      codec: 'h264',
    });
    for (const spec of [
      {
        type: 'images-to-video',
        images: { files: ['in/1.jpg', 'in/2.jpg'], durationsMs: [100, 100] },
      },
      {
        type: 'images-to-video',
        images: { files: ['in/1.jpg'] },
        fps: 10,
        width: 640,
        height: 480,
        audio: single,
      },
      { type: 'extract-audio', input: single, format: 'mp3', bitrateKbps: 128 },
      { type: 'upscale', input: single, scale: 2 },
      { type: 'upscale', input: single, width: 1920 },
      { type: 'thumbnails', input: single, atSeconds: [0, 1.5] },
      { type: 'thumbnails', input: single, everySeconds: 5, sprite: { columns: 5, width: 160 } },
      { type: 'concat', inputs: [single, { file: 'in/b.mp4' }] },
    ]) {
      expect(parse(spec).error).toBeUndefined();
    }
  });

  it.each([
    ['an odd width', { type: 'transcode', input: single, width: 641 }],
    ['a width beyond 3840', { type: 'transcode', input: single, width: 4096 }],
    [
      'both sides beyond 4K either way round',
      { type: 'transcode', input: single, width: 3000, height: 3000 },
    ],
    ['crf and a bit rate', { type: 'transcode', input: single, crf: 20, bitrateKbps: 1000 }],
    ['a crf above 51', { type: 'transcode', input: single, crf: 52 }],
    ['an unknown codec', { type: 'transcode', input: single, codec: 'vp9' }],
    ['fps 0', { type: 'images-to-video', images: { files: ['in/1.jpg'] }, fps: 0 }],
    ['fps 61', { type: 'images-to-video', images: { files: ['in/1.jpg'] }, fps: 61 }],
    [
      'one side only',
      { type: 'images-to-video', images: { files: ['in/1.jpg'] }, fps: 1, width: 640 },
    ],
    [
      'durations not matching the files',
      { type: 'images-to-video', images: { files: ['in/1.jpg'], durationsMs: [1, 2] } },
    ],
    [
      'a zero duration',
      { type: 'images-to-video', images: { files: ['in/1.jpg'], durationsMs: [0] } },
    ],
    ['no images', { type: 'images-to-video', images: { files: [] }, fps: 1 }],
    [
      'a bit rate for wav',
      { type: 'extract-audio', input: single, format: 'wav', bitrateKbps: 128 },
    ],
    ['an unknown audio format', { type: 'extract-audio', input: single, format: 'flac' }],
    ['a scale and a width', { type: 'upscale', input: single, scale: 2, width: 1920 }],
    ['a scale of 1', { type: 'upscale', input: single, scale: 1 }],
    ['a scale above 4', { type: 'upscale', input: single, scale: 5 }],
    ['neither everySeconds nor atSeconds', { type: 'thumbnails', input: single }],
    [
      'both everySeconds and atSeconds',
      { type: 'thumbnails', input: single, everySeconds: 1, atSeconds: [1] },
    ],
    [
      'a sprite with atSeconds',
      { type: 'thumbnails', input: single, atSeconds: [1], sprite: { columns: 2, width: 160 } },
    ],
    [
      '101 times',
      { type: 'thumbnails', input: single, atSeconds: Array.from({ length: 101 }, (_, i) => i) },
    ],
    ['one input to concat', { type: 'concat', inputs: [single] }],
    ['an unknown field', { type: 'concat', inputs: [single, single], extra: 1 }],
    ['an unknown type', { type: 'stabilize', input: single }],
  ])('refuses %s', (_, spec) => {
    expect(parse(spec).success).toBe(false);
  });

  it('is generic over how inputs are named (the API validates its own references)', () => {
    const apiSchema = jobSpecSchema({
      single: z.strictObject({ uploadId: z.uuid() }),
      images: z.strictObject({ recordingId: z.uuid() }),
    });
    const id = '2b1f1c7e-3f51-4a8e-9a0e-0c6f0b8a1d2e';
    expect(
      apiSchema.safeParse({ type: 'extract-audio', input: { uploadId: id }, format: 'aac' })
        .success,
    ).toBe(true);
    expect(
      apiSchema.safeParse({ type: 'images-to-video', images: { recordingId: id }, fps: 10 })
        .success,
    ).toBe(true);
    expect(
      apiSchema.safeParse({ type: 'extract-audio', input: { file: 'in/a.mp4' }, format: 'aac' })
        .success,
    ).toBe(false);
  });
});
