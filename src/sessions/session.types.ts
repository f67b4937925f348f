/** Session lifecycle (spec section 5): open → interrupted → open | abandoned → closed. */
export const SESSION_STATUSES = ['open', 'interrupted', 'abandoned', 'closed'] as const;
export type SessionStatus = (typeof SESSION_STATUSES)[number];

export interface StatusChange {
  status: SessionStatus;
  /** ISO timestamp. */
  at: string;
  cause: string;
}

export interface VideoSettings {
  width: number;
  height: number;
  fps?: number;
  /** `jpeg` when absent; else a codec string (src/protocol/codecs.ts). */
  codec?: string;
  /** Base64 decoder configuration (avcC for H.264). */
  description?: string;
}

export interface AudioSettings {
  sampleRate: number;
  channels: 1 | 2;
  /** `pcm` when absent. */
  codec?: 'pcm' | 'opus';
  /** Base64 OpusHead, when the client sent one. */
  description?: string;
}

export interface RecordingSettings {
  width: number;
  height: number;
}
