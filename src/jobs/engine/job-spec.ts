import { z } from 'zod';
import {
  MAX_AUDIO_KBPS,
  MAX_CONCAT_INPUTS,
  MAX_DURATION_S,
  MAX_FPS,
  MAX_IMAGE_DURATION_MS,
  MAX_IMAGES,
  MAX_NAME_CHARS,
  MAX_NAME_DEPTH,
  MAX_OUTPUT_LONG_SIDE,
  MAX_OUTPUT_SHORT_SIDE,
  MAX_THUMBNAIL_TIMES,
  MAX_UPSCALE_FACTOR,
  MAX_VIDEO_KBPS,
  MIN_AUDIO_KBPS,
  MIN_FPS,
  MIN_OUTPUT_SIDE,
  MIN_VIDEO_KBPS,
} from './limits';

/** The job types, in the order docs/media-jobs.md lists them. */
export const JOB_TYPES = [
  'images-to-video',
  'extract-audio',
  'transcode',
  'upscale',
  'thumbnails',
  'concat',
] as const;
export type JobType = (typeof JOB_TYPES)[number];

/**
 * One path segment: letters, digits, `.`, `_`, `-`, not starting with `.` or `-`. So no `..`, no
 * hidden file, no `%` (ffmpeg's image2 patterns), no `:` (protocols), nothing an option parser
 * could take for a flag.
 */
const SEGMENT = '[A-Za-z0-9_][A-Za-z0-9._-]*';
const REL_NAME = new RegExp(`^${SEGMENT}(/${SEGMENT}){0,${MAX_NAME_DEPTH - 1}}$`);

/**
 * A file inside the job's folder, relative to it. `out/` is where outputs go: never an input.
 * ffmpeg is handed `./<name>` from the folder itself, so the name is read as a plain file.
 */
export const relName = z
  .string()
  .max(MAX_NAME_CHARS)
  .regex(REL_NAME, 'must be a relative path of letters, digits, ".", "_" and "-" (no "..")')
  .refine((name) => name !== 'out' && !name.startsWith('out/'), 'must not be inside out/');

const posInt = z.number().int().positive();

/** One media file (video, audio or image) inside the job's folder. */
export const localSingleSchema = z.strictObject({ file: relName });

/**
 * An ordered set of images inside the job's folder, with optional display times (ms) for each:
 * a session's stored frames come with the differences of their capture times.
 */
export const localImagesSchema = z
  .strictObject({
    files: z.array(relName).min(1).max(MAX_IMAGES),
    durationsMs: z.array(posInt.max(MAX_IMAGE_DURATION_MS)).max(MAX_IMAGES).optional(),
  })
  .refine((images) => !images.durationsMs || images.durationsMs.length === images.files.length, {
    message: 'durationsMs must give one duration per file',
    path: ['durationsMs'],
  });

/** An output side: even (4:2:0 chroma), 16..3840. */
const side = z
  .number()
  .int()
  .min(MIN_OUTPUT_SIDE)
  .max(MAX_OUTPUT_LONG_SIDE)
  .refine((n) => n % 2 === 0, 'must be even (H.264 4:2:0 needs even sizes)');

/** Refuses a width×height beyond 4K in either orientation (the long side ≤ 3840, short ≤ 2160). */
function checkOutputSize(
  size: { width?: number; height?: number },
  ctx: z.RefinementCtx,
  path: string[] = [],
): void {
  if (size.width !== undefined && size.height !== undefined) {
    if (Math.min(size.width, size.height) > MAX_OUTPUT_SHORT_SIDE) {
      ctx.addIssue({
        code: 'custom',
        path: [...path, 'height'],
        message: `the shorter side must be at most ${MAX_OUTPUT_SHORT_SIDE} (4K: ${MAX_OUTPUT_LONG_SIDE}×${MAX_OUTPUT_SHORT_SIDE} either way round)`,
      });
    }
  }
}

function bothOrNeither(size: { width?: number; height?: number }, ctx: z.RefinementCtx): void {
  if ((size.width === undefined) !== (size.height === undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: [size.width === undefined ? 'width' : 'height'],
      message: 'give both width and height, or neither',
    });
  }
}

/**
 * The job specs, generic over how an input is named: the API validates requests with its own
 * input references (uploads, recordings) and the engine runs on files in the job's folder
 * (`localSingleSchema`, `localImagesSchema`). Cross-field rules that need the inputs' contents
 * (sizes, durations) are checked by the engine against the probes.
 */
export function jobSpecSchema<S extends z.ZodType, M extends z.ZodType>(inputs: {
  single: S;
  images: M;
}) {
  const { single, images } = inputs;
  return z.discriminatedUnion('type', [
    z
      .strictObject({
        type: z.literal('images-to-video'),
        images,
        /**
         * Frames per second. Without per-image durations each image is one frame at this rate;
         * with them it is the output rate the display times are rounded to (default 30).
         */
        fps: z.number().int().min(MIN_FPS).max(MAX_FPS).optional(),
        /** Output size; default the first image's size, made even (each image fitted, black bars). */
        width: side.optional(),
        height: side.optional(),
        /** Sound muxed under the pictures (AAC); the output ends with the pictures. */
        audio: single.optional(),
      })
      .superRefine((spec, ctx) => {
        bothOrNeither(spec, ctx);
        checkOutputSize(spec, ctx);
      }),
    z
      .strictObject({
        type: z.literal('extract-audio'),
        input: single,
        format: z.enum(['wav', 'aac', 'mp3']),
        /** AAC or MP3 bit rate; default 128 (AAC) or 192 (MP3). */
        bitrateKbps: z.number().int().min(MIN_AUDIO_KBPS).max(MAX_AUDIO_KBPS).optional(),
      })
      .superRefine((spec, ctx) => {
        if (spec.format === 'wav' && spec.bitrateKbps !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['bitrateKbps'],
            message: 'wav is uncompressed PCM: it has no bit rate to choose',
          });
        }
      }),
    z
      .strictObject({
        type: z.literal('transcode'),
        input: single,
        codec: z.enum(['h264', 'h265']).default('h264'),
        /** Output size: both (fitted, black bars), one (the other keeps the aspect) or neither. */
        width: side.optional(),
        height: side.optional(),
        /** Constant rate factor (default 23), or a bit rate: exactly one of them at most. */
        crf: z.number().int().min(0).max(51).optional(),
        bitrateKbps: z.number().int().min(MIN_VIDEO_KBPS).max(MAX_VIDEO_KBPS).optional(),
      })
      .superRefine((spec, ctx) => {
        if (spec.crf !== undefined && spec.bitrateKbps !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['bitrateKbps'],
            message: 'give crf or bitrateKbps, not both',
          });
        }
        checkOutputSize(spec, ctx);
      }),
    z
      .strictObject({
        type: z.literal('upscale'),
        input: single,
        /** Target size (one alone keeps the aspect), or `scale`: exactly one way. */
        width: side.optional(),
        height: side.optional(),
        scale: z.number().gt(1).max(MAX_UPSCALE_FACTOR).optional(),
      })
      .superRefine((spec, ctx) => {
        const bySize = spec.width !== undefined || spec.height !== undefined;
        if (bySize === (spec.scale !== undefined)) {
          ctx.addIssue({
            code: 'custom',
            path: ['scale'],
            message: 'give a target width and/or height, or a scale factor (exactly one way)',
          });
        }
        checkOutputSize(spec, ctx);
      }),
    z
      .strictObject({
        type: z.literal('thumbnails'),
        input: single,
        /** One frame every so many seconds, or the frames at these times: exactly one of them. */
        everySeconds: z.number().min(0.1).max(MAX_DURATION_S).optional(),
        atSeconds: z
          .array(z.number().min(0).max(MAX_DURATION_S))
          .min(1)
          .max(MAX_THUMBNAIL_TIMES)
          .optional(),
        /** Width of each JPEG (height keeps the aspect); default 320. Not with `sprite`. */
        width: side.optional(),
        /**
         * One sprite sheet (`sprite.jpg`, `columns` tiles of `width` a row) and a WebVTT index
         * (`index.vtt`) instead of single frames; needs `everySeconds`.
         */
        sprite: z
          .strictObject({
            columns: z.number().int().min(1).max(30),
            width: side.refine((w) => w <= 1280, 'must be at most 1280'),
          })
          .optional(),
      })
      .superRefine((spec, ctx) => {
        if ((spec.everySeconds === undefined) === (spec.atSeconds === undefined)) {
          ctx.addIssue({
            code: 'custom',
            path: ['everySeconds'],
            message: 'give everySeconds or atSeconds (exactly one)',
          });
        }
        if (spec.sprite && spec.everySeconds === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['sprite'],
            message: 'a sprite sheet needs everySeconds',
          });
        }
        if (spec.sprite && spec.width !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['width'],
            message: 'with a sprite, the tile width is sprite.width',
          });
        }
      }),
    z.strictObject({
      type: z.literal('concat'),
      /** In order; the output has the first one's picture size (others fitted, black bars). */
      inputs: z.array(single).min(2).max(MAX_CONCAT_INPUTS),
    }),
  ]);
}

/** A job as the engine runs it: every input a file in the job's folder. */
export const engineJobSchema = jobSpecSchema({
  single: localSingleSchema,
  images: localImagesSchema,
});

export type EngineJob = z.output<
  ReturnType<typeof jobSpecSchema<typeof localSingleSchema, typeof localImagesSchema>>
>;
export type LocalSingle = z.output<typeof localSingleSchema>;
export type LocalImages = z.output<typeof localImagesSchema>;
/** One job type's spec. */
export type JobSpecOf<T extends JobType> = Extract<EngineJob, { type: T }>;
