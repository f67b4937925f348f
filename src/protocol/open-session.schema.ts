import { z } from 'zod';
import { AUDIO_CODECS, BASE64_PATTERN, needsDescription, videoCodecFamily } from './codecs';

/** Business parameters are stored once per session; this caps their JSON size. */
export const MAX_PARAMS_BYTES = 8 * 1024;

const dimension = (max: number) => z.number().int().min(16).max(max);
const evenDimension = (max: number) =>
  dimension(max).refine((n) => n % 2 === 0, 'must be even (H.264 4:2:0 needs even sizes)');

/** Largest decoder configuration accepted, in bytes once decoded (an avcC is tens of bytes). */
export const MAX_DESCRIPTION_BYTES = 4096;

const description = z
  .string()
  .max(Math.ceil(MAX_DESCRIPTION_BYTES / 3) * 4)
  .regex(BASE64_PATTERN, 'must be base64')
  .refine((d) => Buffer.from(d, 'base64').length > 0, 'must not be empty');

/** Capture settings of the video track. */
export const videoSettingsSchema = z
  .strictObject({
    width: dimension(8192),
    height: dimension(8192),
    /** Nominal capture rate; the server's RECORDING_FPS when absent. */
    fps: z.number().min(0.1).max(120).optional(),
    /** `jpeg` (the default), `avc1.PPCCLL`, `vp8` or `vp09.PP.LL.DD…` (src/protocol/codecs.ts). */
    codec: z
      .string()
      .max(64)
      .refine((c) => videoCodecFamily(c) !== null, 'must be jpeg, avc1.PPCCLL, vp8 or vp09.*')
      .optional(),
    /** Base64 decoder configuration: the avcC record for `avc1.*` (required), none for VP8. */
    description: description.optional(),
  })
  .superRefine((video, ctx) => {
    const family = videoCodecFamily(video.codec ?? 'jpeg');
    if (family === null) {
      return;
    }
    if (family === 'jpeg' && video.description !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['description'], message: 'jpeg takes no description' });
    }
    if (needsDescription(family) && video.description === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['description'],
        message: `is required for ${video.codec}: the base64 avcC (VideoEncoder's decoderConfig.description)`,
      });
    }
  });

/** Audio: PCM s16le (the default) or Opus packets; sample rate and channel count. */
export const audioSettingsSchema = z.strictObject({
  sampleRate: z.number().int().min(8000).max(96_000),
  channels: z.union([z.literal(1), z.literal(2)]),
  codec: z.enum(AUDIO_CODECS).optional(),
  /** Opus: the base64 OpusHead (AudioEncoder's decoderConfig.description), optional. */
  description: description.optional(),
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
  /** What the server accepted for this session, and the channel's limits on it. */
  media: z.strictObject({
    video: z.strictObject({
      codec: z.string(),
      /** The largest coded size accepted; larger chunks get `bad_frame`. */
      maxWidth: z.number().int(),
      maxHeight: z.number().int(),
      /** The bandwidth quota (video and audio together), kbit/s: the encoder's bitrate ceiling. */
      maxKbps: z.number(),
      /** Longest run without a key frame before the server asks for one (`keyframe`). */
      keyframeIntervalMs: z.number().int(),
    }),
    audio: z.strictObject({ codec: z.string() }).nullable(),
  }),
});

export type Opened = z.output<typeof openedSchema>;
