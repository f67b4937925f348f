/**
 * The admin REST API as the console uses it (docs/admin-api.md): a bearer token with the scope
 * `admin`, JSON answers, and framegate's one error body. The answer shapes are written out here
 * because the console is plain browser modules with no bundler: it cannot import the server's
 * zod schemas, and the admin services' types are not on this branch yet (they can replace these
 * with `import type` from src/admin once both are merged).
 */

export type SessionStatus = 'open' | 'interrupted' | 'abandoned' | 'closed';
export const SESSION_STATUSES: readonly SessionStatus[] = [
  'open',
  'interrupted',
  'abandoned',
  'closed',
];

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface SessionSummary {
  id: string;
  subject: string;
  channel: string;
  status: SessionStatus;
  params: Record<string, unknown>;
  node: string;
  lastSeq: number;
  videoFrames: number;
  audioFrames: number;
  rejectedFrames: number;
  bytesIn: number;
  createdAt: string;
  updatedAt: string;
  closedAt: string | null;
}

export interface StatusChange {
  status: SessionStatus;
  at: string;
  cause?: string;
}

export interface ConnectionClose {
  closedAt: string;
  closeCode: number | null;
  closeReason: string | null;
  closedBy: string | null;
  durationMs: number | null;
  bytesIn: number | null;
  bytesOut: number | null;
  framesIn: number | null;
  framesOut: number | null;
}

export interface ConnectionAudit {
  id: string;
  at: string;
  count: number;
  lastAt: string | null;
  node: string;
  transport: string;
  remoteAddress: string | null;
  userAgent: string | null;
  origin: string | null;
  subject: string | null;
  channel: string | null;
  outcome: string;
  error: string | null;
  sessionId: string | null;
  close: ConnectionClose | null;
}

export interface SessionEvent {
  at: string;
  type: string;
  connectionId: string | null;
  detail: unknown;
}

export interface SessionMessage {
  id: string;
  direction: 'in' | 'out';
  clientId: string;
  body: unknown;
  sender: string | null;
  createdAt: string;
}

export interface RecordingDetail {
  id: string;
  status: string;
  failureReason: string | null;
  bytes: number | null;
  durationMs: number | null;
  frameCount: number | null;
  width: number | null;
  height: number | null;
  videoCodec: string | null;
  audioCodec: string | null;
  sha256: string | null;
  createdAt: string;
  readyAt: string | null;
}

export interface SessionDetail {
  session: Omit<SessionSummary, 'node'> & {
    node?: string;
    video?: { width: number; height: number; fps?: number } | null;
    audio?: { sampleRate: number; channels: number } | null;
  };
  statusHistory: StatusChange[];
  live: {
    node: string;
    attached: { transport: 'ws' | 'http'; connectionId: string | null } | null;
  } | null;
  connections: ConnectionAudit[];
  events: SessionEvent[];
  messages: SessionMessage[];
  truncated: boolean;
  recording: RecordingDetail | null;
}

export interface LiveConnection {
  id: string;
  sessionId: string | null;
  subject: string;
  channel: string;
  remoteAddress: string | null;
  transport: string;
  since: string;
  framesIn: number;
  bytesIn: number;
  lastSeen: string;
}

export interface Quotas {
  maxConnections: number;
  handshakesPerMin: number;
  maxFps: number;
  maxKbps: number;
}

export type QuotaKey = keyof Quotas;
export const QUOTA_KEYS: readonly QuotaKey[] = [
  'maxConnections',
  'handshakesPerMin',
  'maxFps',
  'maxKbps',
];

export type QuotaOverride = { [K in QuotaKey]: number | null } & { updatedAt?: string };

export interface ChannelView {
  channel: string;
  connections: number;
  effective: Quotas;
  override: QuotaOverride | null;
}

export interface ChannelQuotaView {
  channel: string;
  effective: Quotas;
  override: QuotaOverride | null;
  defaults: Quotas;
}

/** One bad field of a `validation_failed` answer. */
export interface FieldProblem {
  field: string;
  problem: string;
}

/** A refusal of the API (its error body), or a failure to reach it (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: FieldProblem[] = [],
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** What to tell the operator: the code and the server's message, with a hint for auth. */
  describe(): string {
    if (this.status === 401) {
      return `The token was refused (${this.code}: ${this.message}). Paste a valid admin token.`;
    }
    if (this.status === 403) {
      return `The token lacks the admin scope (${this.code}: ${this.message}).`;
    }
    if (this.status === 0) {
      return `The service did not answer: ${this.message}`;
    }
    return `${this.code} (${this.status}): ${this.message}`;
  }
}

interface ErrorBody {
  error?: unknown;
  message?: unknown;
  fields?: unknown;
}

/** A client of the admin API for one token. */
export class AdminApi {
  constructor(private readonly token: string) {}

  searchSessions(query: URLSearchParams): Promise<Page<SessionSummary>> {
    return this.json(`/v1/admin/sessions?${query.toString()}`);
  }

  session(id: string): Promise<SessionDetail> {
    return this.json(`/v1/admin/sessions/${encodeURIComponent(id)}`);
  }

  connections(): Promise<{ node: string; items: LiveConnection[] }> {
    return this.json('/v1/admin/connections');
  }

  kick(id: string): Promise<{ connectionId: string; sessionId: string | null; kicked: boolean }> {
    return this.json(`/v1/admin/connections/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  channels(): Promise<{ defaults: Quotas; channels: ChannelView[] }> {
    return this.json('/v1/admin/channels');
  }

  setQuota(channel: string, body: Partial<Record<QuotaKey, number>>): Promise<ChannelQuotaView> {
    return this.json(`/v1/admin/channels/${encodeURIComponent(channel)}/quota`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  }

  /** The session's MP4 as a blob (a `<video>` cannot send the bearer token itself). */
  async recording(sessionId: string, signal?: AbortSignal): Promise<Blob> {
    const res = await this.request(`/v1/sessions/${encodeURIComponent(sessionId)}/recording`, {
      signal,
    });
    return res.blob();
  }

  /** The recording's captions (its messages, WebVTT) as a blob, for a `<track>` beside it. */
  async captions(sessionId: string, signal?: AbortSignal): Promise<Blob> {
    const res = await this.request(`/v1/sessions/${encodeURIComponent(sessionId)}/recording.vtt`, {
      signal,
    });
    return res.blob();
  }

  private async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const res = await this.request(path, init);
    return (await res.json()) as T;
  }

  private async request(path: string, init: RequestInit): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(path, {
        ...init,
        headers: {
          ...(init.headers as Record<string, string>),
          authorization: `Bearer ${this.token}`,
        },
        cache: 'no-store',
      });
    } catch (err) {
      if (err instanceof DOMException && err.name === 'AbortError') {
        throw err;
      }
      throw new ApiError(0, 'network_error', err instanceof Error ? err.message : String(err));
    }
    if (!res.ok) {
      throw await errorOf(res);
    }
    return res;
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  let body: ErrorBody = {};
  try {
    body = (await res.json()) as ErrorBody;
  } catch {
    // Not framegate's JSON (a proxy's page): the status says what there is to say.
  }
  const fields = Array.isArray(body.fields)
    ? (body.fields as unknown[]).filter(
        (f): f is FieldProblem =>
          typeof f === 'object' &&
          f !== null &&
          typeof (f as FieldProblem).field === 'string' &&
          typeof (f as FieldProblem).problem === 'string',
      )
    : [];
  return new ApiError(
    res.status,
    typeof body.error === 'string' ? body.error : `http_${res.status}`,
    typeof body.message === 'string' ? body.message : res.statusText || 'no message',
    fields,
  );
}
