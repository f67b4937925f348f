import { z } from 'zod';

/** Business parameters are stored once per session; this caps their JSON size. */
export const MAX_PARAMS_BYTES = 8 * 1024;

const dimension = (max: number) => z.number().int().min(16).max(max);
const evenDimension = (max: number) =>
  dimension(max).refine((n) => n % 2 === 0, 'must be even (H.264 4:2:0 needs even sizes)');

/** Capture settings of the video track. */
export const videoSettingsSchema = z.strictObject({
  width: dimension(8192),
  height: dimension(8192),
  /** Nominal capture rate; the server's RECORDING_FPS when absent. */
  fps: z.number().min(0.1).max(120).optional(),
});

/** PCM s16le audio: sample rate and channel count. */
export const audioSettingsSchema = z.strictObject({
  sampleRate: z.number().int().min(8000).max(96_000),
  channels: z.union([z.literal(1), z.literal(2)]),
});

/** Output resolution of the recording; may upscale. */
export const recordingSettingsSchema = z.strictObject({
  width: evenDimension(3840),
  height: evenDimension(2160),
});

export const paramsSchema = z
  .record(z.string(), z.unknown())
  .refine((p) => Buffer.byteLength(JSON.stringify(p)) <= MAX_PARAMS_BYTES, {
    message: `must be at most ${MAX_PARAMS_BYTES} bytes of JSON`,
  });

/** The body of `open` (WebSocket) and of `POST /v1/sessions` (HTTP fallback). */
export const openSessionSchema = z.strictObject({
  params: paramsSchema.default({}),
  video: videoSettingsSchema,
  audio: audioSettingsSchema.optional(),
  recording: recordingSettingsSchema.optional(),
});

export type OpenSession = z.output<typeof openSessionSchema>;

/** The fields of `opened`, sent on WebSocket and returned by `POST /v1/sessions`. */
export const openedSchema = z.strictObject({
  sessionId: z.string().uuid(),
  /** Secret of the session: with `sessionId`, what `resume` and the fallback routes need. */
  resumeToken: z.string(),
  /** The highest seq the server has stored: the client sends from `lastSeq + 1`. */
  lastSeq: z.number().int().min(0),
  /** The merged-ack rule: an ack at least every `intervalMs` or every `maxFrames` frames. */
  ack: z.strictObject({ intervalMs: z.number().int(), maxFrames: z.number().int() }),
  limits: z.strictObject({ maxFrameBytes: z.number().int(), maxFps: z.number() }),
});

export type Opened = z.output<typeof openedSchema>;
