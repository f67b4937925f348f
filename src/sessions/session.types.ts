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
}

export interface AudioSettings {
  sampleRate: number;
  channels: 1 | 2;
}

export interface RecordingSettings {
  width: number;
  height: number;
}
