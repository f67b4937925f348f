import { z } from 'zod';
import { pageOf } from '../admin/admin-api.schema';
import { pageQuery } from '../admin/admin-query';
import {
  engineLimits,
  JOB_TYPES,
  jobSpecSchema,
  localImagesSchema,
  localSingleSchema,
  relName,
} from './engine';
import { webhookSpecSchema } from '../webhooks/webhook-url';
import { MEDIA_JOB_STATES } from './media-job.entity';

/**
 * What the media jobs API takes and answers: the OpenAPI schemas and the TypeScript types, in one
 * place. The job specs themselves are the engine's (`jobSpecSchema`), with inputs named the API's
 * way: an uploaded file part or a recording instead of a file in the job's folder.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const uuid = z.string().regex(UUID, 'must be a UUID');

/**
 * The name of a file part of a multipart submission: also its file name in the job's folder, so
 * it is one safe path segment (no `/`, `..`, `%` or `:`).
 */
export const partName = z
  .string()
  .regex(
    /^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$/,
    'a part name has 1 to 100 letters, digits, ".", "_" or "-", and starts with a letter, digit or "_"',
  );

/** One media input: a file part of this request, or the recording of a session. */
export const inputRefSchema = z.union(
  [z.strictObject({ upload: partName }), z.strictObject({ recording: uuid })],
  { error: 'an input is {"upload": "<part name>"} or {"recording": "<session id>"}' },
);
export type InputRef = z.output<typeof inputRefSchema>;

/** An ordered set of images: file parts of this request, or the stored video frames of a session. */
export const imagesRefSchema = z.union(
  [
    z
      .strictObject({
        uploads: z.array(partName).min(1).max(engineLimits.MAX_IMAGES),
        /** Display time of each image (ms); else each is one frame at `fps`. */
        durationsMs: z
          .array(z.number().int().positive().max(engineLimits.MAX_IMAGE_DURATION_MS))
          .max(engineLimits.MAX_IMAGES)
          .optional(),
      })
      .refine((m) => !m.durationsMs || m.durationsMs.length === m.uploads.length, {
        message: 'durationsMs must give one duration per upload',
        path: ['durationsMs'],
      }),
    z.strictObject({ sessionFrames: uuid }),
  ],
  {
    error:
      'images are {"uploads": ["<part name>", ...]} or {"sessionFrames": "<session id>"} ' +
      '(a session whose frames are still stored)',
  },
);
export type ImagesRef = z.output<typeof imagesRefSchema>;

/** Every job type, its inputs named by reference. */
export const refSpecSchema = jobSpecSchema({ single: inputRefSchema, images: imagesRefSchema });
export type RefSpec = z.output<typeof refSpecSchema>;

/**
 * `concat` of a transaction: the recordings of the caller's sessions (an admin's: anyone's) whose
 * `open` params have this `transactionId`, in the order they were opened.
 */
export const transactionConcatSchema = z.strictObject({
  type: z.literal('concat'),
  transactionId: z.string().min(1).max(200),
});
export type TransactionConcat = z.output<typeof transactionConcatSchema>;

/** A job spec as the API takes it (without its optional `webhook`). */
export type SubmittedSpec = RefSpec | TransactionConcat;

/** Documents the spec part of a submission; the route picks one of the two by `transactionId`. */
export const submittedSpecSchema = z.union([refSpecSchema, transactionConcatSchema]);

/** Documents a whole submission: a spec and its optional `webhook` (docs/webhooks.md). */
export const submissionSchema = z.intersection(
  submittedSpecSchema,
  z.object({ webhook: webhookSpecSchema.optional() }),
);

/**
 * A session's stored frames as the runner gets them: its spool, linked into the job's folder,
 * turned into image files when the job runs (`framesFromSpool`).
 */
export const spoolImagesSchema = z.strictObject({
  spool: relName,
  /** Display time of the last frame: the session's nominal frame interval. */
  lastDurationMs: z.number().int().positive(),
});

/** A job as stored for the runner: every input a file in the job's folder (or a linked spool). */
export const planSchema = jobSpecSchema({
  single: localSingleSchema,
  images: z.union([localImagesSchema, spoolImagesSchema]),
});
export type JobPlan = z.output<typeof planSchema>;

const when = z.string();

/** One output of a completed job. */
export const jobOutputViewSchema = z.strictObject({
  name: z.string(),
  contentType: z.string(),
  /** What `GET …/result` returns; the others are at `…/result/{name}`. */
  primary: z.boolean(),
  bytes: z.number().int(),
  /** Hex; also the output's ETag. */
  sha256: z.string(),
  /** ffprobe's facts: format, duration, and per stream its codec, size or sound; null for WebVTT. */
  probe: z.record(z.string(), z.unknown()).nullable(),
  /** Path of the output on this API. */
  url: z.string(),
});

/** `GET /v1/media/jobs/{id}`: the job's record. */
export const jobViewSchema = z.strictObject({
  id: z.string().uuid(),
  type: z.enum(JOB_TYPES),
  state: z.enum(MEDIA_JOB_STATES),
  /** Percent of the current attempt (from ffmpeg's `-progress`); 100 once completed. */
  progress: z.number(),
  /** Attempts started (a restart mid-job counts as one), and how many the job may have. */
  attempts: z.number().int(),
  maxAttempts: z.number().int(),
  subject: z.string(),
  channel: z.string(),
  /** The spec as submitted: input references, no webhook secret. */
  spec: z.record(z.string(), z.unknown()),
  createdAt: when,
  /** When the first attempt started, and when the job reached its final state. */
  startedAt: when.nullable(),
  finishedAt: when.nullable(),
  durations: z.strictObject({
    /** Created to first start. */
    queuedMs: z.number().nullable(),
    /** First start to the end (retries included). */
    runningMs: z.number().nullable(),
    /** Created to the end. */
    totalMs: z.number().nullable(),
  }),
  /** Why it failed (or why the last attempt did, while it is retried). */
  error: z.string().nullable(),
  outputs: z.array(jobOutputViewSchema),
  /** When retention removes (or removed) the job's files. */
  outputsExpireAt: when.nullable(),
  outputsExpired: z.boolean(),
  webhook: z.strictObject({ url: z.string() }).nullable(),
  /** What happened to the job, oldest first (at most the last 100). */
  events: z.array(
    z.strictObject({
      at: when,
      type: z.string(),
      node: z.string(),
      subject: z.string().nullable(),
      detail: z.record(z.string(), z.unknown()),
    }),
  ),
});
export type JobView = z.output<typeof jobViewSchema>;

/** One job in a list: the record without its events. */
export const jobSummarySchema = jobViewSchema.omit({ events: true });
export type JobSummary = z.output<typeof jobSummarySchema>;

export const jobPageSchema = pageOf(jobSummarySchema);

/** `GET /v1/media/jobs`: the caller's jobs, newest first. */
export const jobListQuery = z.strictObject({
  state: z.enum(MEDIA_JOB_STATES).optional(),
  ...pageQuery,
});
