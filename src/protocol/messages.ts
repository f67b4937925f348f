import { z } from 'zod';
import { openedSchema, openSessionSchema } from './open-session.schema';

/** Control (text) messages are at most this large. */
export const MAX_CONTROL_BYTES = 64 * 1024;

const msgId = z.string().min(1).max(128);

/** Client to server text messages (spec section 3), validated strictly. */
export const clientMessageSchema = z.discriminatedUnion('type', [
  openSessionSchema.extend({ type: z.literal('open') }),
  z.strictObject({
    type: z.literal('resume'),
    sessionId: z.string().uuid(),
    resumeToken: z.string().min(20).max(200),
  }),
  z.strictObject({
    type: z.literal('msg'),
    id: msgId,
    body: z.unknown().refine((b) => b !== undefined, 'is required'),
  }),
  z.strictObject({
    type: z.literal('ping'),
    t: z.union([z.number(), z.string().max(64)]).optional(),
  }),
  z.strictObject({
    type: z.literal('auth'),
    token: z
      .string()
      .min(1)
      .max(16 * 1024),
  }),
  z.strictObject({ type: z.literal('close'), reason: z.string().max(256).optional() }),
]);

export type ClientMessage = z.output<typeof clientMessageSchema>;
export type ClientMessageType = ClientMessage['type'];

/** A business message body, as sent with `msg` or pushed by the API. */
export const messageBodySchema = z.strictObject({ id: msgId, body: z.unknown() });

/** The `recording` of `closed`. */
export const closedRecordingSchema = z.strictObject({
  id: z.string().uuid().nullable(),
  status: z.enum(['pending', 'recording', 'finalizing', 'ready', 'failed']),
  durationMs: z.number().nullable(),
  /** Why the recording failed. */
  reason: z.string().optional(),
});

export type ClosedRecording = z.output<typeof closedRecordingSchema>;

/** The fields of `closed`, on WebSocket and as the answer of `POST /v1/sessions/{id}/close`. */
export const closedSchema = z.strictObject({
  sessionId: z.string().uuid(),
  /** Media messages stored for the session, in total. */
  frames: z.number().int().min(0),
  recording: closedRecordingSchema,
});

export type Closed = z.output<typeof closedSchema>;

/** Why the server asks for a key frame (`keyframe` on WebSocket, `keyframe` of a frames answer). */
export const keyframeReasonSchema = z.enum(['resume', 'refused', 'interval']);
export type KeyframeReason = z.output<typeof keyframeReasonSchema>;

/** The answer of `POST /v1/sessions/{id}/frames` (the HTTP fallback's ack). */
export const framesAckSchema = z.strictObject({
  /** Every media message up to this seq is settled: stored, or refused below. */
  ack: z.number().int().min(0),
  /** The session's `opened.media`: HTTP has no `opened` on resume. */
  media: openedSchema.shape.media,
  /** Chunks of this body refused as `bad_frame` (not recorded; their seqs are settled). */
  refused: z
    .array(z.strictObject({ seq: z.number().int().min(1), code: z.string(), message: z.string() }))
    .optional(),
  /** The server asks for a key frame next. */
  keyframe: keyframeReasonSchema.optional(),
});

export type FramesAck = z.output<typeof framesAckSchema>;

/** Server to client text messages (spec section 3). */
export const serverMessageSchema = z.discriminatedUnion('type', [
  openedSchema.extend({ type: z.literal('opened') }),
  /** Every media message up to `seq` is stored durably. */
  z.strictObject({ type: z.literal('ack'), seq: z.number().int().min(1) }),
  /** The frame rate the client may send from now on; 0 pauses until the next `flow`. */
  z.strictObject({ type: z.literal('flow'), maxFps: z.number().min(0), reason: z.string() }),
  /**
   * Send a key frame next (compressed video): after a resume, after a refused chunk, or when the
   * stream went `keyframeIntervalMs` without one.
   */
  z.strictObject({ type: z.literal('keyframe'), reason: keyframeReasonSchema }),
  z.strictObject({ type: z.literal('msg.ack'), id: msgId }),
  z.strictObject({ type: z.literal('msg'), id: msgId, body: z.unknown() }),
  z.strictObject({ type: z.literal('pong'), t: z.union([z.number(), z.string()]).optional() }),
  z.strictObject({
    type: z.literal('error'),
    code: z.string(),
    message: z.string(),
    seq: z.number().int().optional(),
  }),
  closedSchema.extend({ type: z.literal('closed') }),
]);

export type ServerMessage = z.output<typeof serverMessageSchema>;
