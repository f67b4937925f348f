import { z } from 'zod';
import { openSessionSchema, type Opened } from './open-session.schema';

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
export interface ClosedRecording {
  id: string | null;
  status: 'pending' | 'recording' | 'finalizing' | 'ready' | 'failed';
  durationMs: number | null;
  reason?: string;
}

/** The fields of `closed`, on WebSocket and as the answer of `POST /v1/sessions/{id}/close`. */
export interface Closed {
  sessionId: string;
  frames: number;
  recording: ClosedRecording;
}

/** Server to client text messages (spec section 3). */
export type ServerMessage =
  | ({ type: 'opened' } & Opened)
  | { type: 'ack'; seq: number }
  | { type: 'flow'; maxFps: number; reason: string }
  | { type: 'msg.ack'; id: string }
  | { type: 'msg'; id: string; body: unknown }
  | { type: 'pong'; t?: number | string }
  | { type: 'error'; code: string; message: string; seq?: number }
  | ({ type: 'closed' } & Closed);
