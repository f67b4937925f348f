import type { z } from 'zod';
import { CloseCode } from '../../src/protocol/close-codes.js';
import { encodeFramesBody, FRAMES_CONTENT_TYPE } from '../../src/protocol/fallback-framing.js';
import {
  FLAG_KEY,
  MEDIA_HEADER_BYTES,
  readMediaSeq,
  Track,
  writeMediaHeader,
} from '../../src/protocol/media-header.js';
import type {
  Closed,
  FramesAck,
  KeyframeReason,
  ServerMessage,
} from '../../src/protocol/messages.js';
import type { openSessionSchema, Opened } from '../../src/protocol/open-session.schema.js';
import { SUBPROTOCOL } from '../../src/protocol/subprotocol.js';
import { Emitter } from './emitter.js';
import { Outbox, type OutboxStore, type PersistedSession } from './outbox.js';
import {
  backoffDelay,
  type BackoffOptions,
  closeAction,
  DEFAULT_BACKOFF,
} from './reconnect-policy.js';
import type { SocketConnection, SocketFactory } from './socket.js';

/** The body of `open`: business `params`, `video`, optional `audio` and `recording`. */
export type OpenSettings = z.input<typeof openSessionSchema>;

export type ClientState =
  'idle' | 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed' | 'failed';

export type TransportKind = 'websocket' | 'http';

/** A final error: the client stopped and will not retry. `code` is stable, `message` for people. */
export class ClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** The WebSocket close code that ended the session, when one did. */
    readonly closeCode?: number,
    /** The HTTP status that refused it, when one did. */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ClientError';
  }
}

export interface ClientOptions {
  /** The service's base URL, e.g. `https://framegate.example.com`. */
  url: string;
  /** An access token with `stream:publish`. */
  token?: string;
  /**
   * Returns a fresh access token: called when there is none yet, after 4001 (token expired), and
   * after a 401; in browsers also before each connection, to get a ticket with it.
   */
  getToken?: () => string | Promise<string>;
  /** A single-use ticket from `POST /v1/tickets`, for the first connection only. */
  ticket?: string;
  /** Opens WebSockets (`nodeSocketFactory`, `browserSocketFactory`). */
  socket: SocketFactory;
  /** Where unacknowledged frames and the resume token survive a crash or a reload. */
  outbox?: OutboxStore;
  /** Reconnect delays and attempts. */
  reconnect?: Partial<BackoffOptions>;
  /** Frames are refused (and `backpressure` fires) while this many bytes are unacknowledged. */
  maxUnackedBytes?: number;
  /** After falling back to HTTP, try the WebSocket again after this long. */
  retryWebSocketAfterMs?: number;
  /** Largest HTTP fallback body, in bytes of frames. */
  httpBatchBytes?: number;
  /** Application pings (RTT, liveness) and HTTP keep-alives are this far apart. */
  pingIntervalMs?: number;
  /** A WebSocket silent for this long is dropped and resumed (a dead network sends no FIN). */
  livenessTimeoutMs?: number;
  /** Each HTTP request is abandoned (and retried) after this long. */
  requestTimeoutMs?: number;
}

/** What `stats()` returns. */
export interface ClientStats {
  state: ClientState;
  transport: TransportKind;
  sessionId: string | null;
  /** Frames acknowledged per second, over the last second or more. */
  fps: number;
  /** The rate the server allows now (`opened.limits.maxFps`, then `flow`). */
  maxFps: number;
  ackedSeq: number;
  /** Highest seq handed to the current transport. */
  sentSeq: number;
  /** Seq the next frame gets. */
  nextSeq: number;
  rttMs: number | null;
  /** Media bytes written to a transport, resends included. */
  bytesSent: number;
  outboxDepth: number;
  unackedBytes: number;
  reconnects: number;
  /** The video codec in force (`opened.media.video.codec`); null before the first `opened`. */
  codec: string | null;
  /** Chunks the server refused with `bad_frame` (settled: not recorded, not resent). */
  refusedFrames: number;
}

export interface ClientEvents {
  state: (state: ClientState) => void;
  transport: (transport: TransportKind) => void;
  opened: (opened: Opened & { resumed: boolean }) => void;
  ack: (seq: number) => void;
  flow: (flow: { maxFps: number; reason: string }) => void;
  /** The unacknowledged bytes reached `maxUnackedBytes`: frames are refused until `drain`. */
  backpressure: (unackedBytes: number) => void;
  drain: () => void;
  reconnecting: (info: { attempt: number; delayMs: number; cause: string }) => void;
  /** A recoverable `error` from the server (e.g. `bad_image`); the session goes on. */
  serverError: (error: { code: string; message: string; seq?: number }) => void;
  /**
   * The server refused the chunk `seq` (`bad_frame`, over WebSocket or in an HTTP answer): it is
   * settled (the next ack covers it), not recorded and not resent. Deltas after it are refused too
   * until a key frame: the server asks for one (`keyframe`).
   */
  badFrame: (refusal: { seq: number; message: string }) => void;
  /**
   * The server asks for a key frame (compressed video): the capture helpers encode the next frame
   * as one.
   */
  keyframe: (reason: KeyframeReason) => void;
  /** A `msg` pushed by the business or admin API. */
  message: (message: { id: string; body: unknown }) => void;
  /** The server stored the app's message `id` (`msg.ack`). */
  messageAck: (id: string) => void;
  /** Final: the client stopped. */
  error: (error: ClientError) => void;
  closed: (closed: Closed) => void;
}

/** Why `trySend` did not take a frame. */
export type Refusal = 'rate' | 'full';

/**
 * Every `keyframe` reason, checked by the compiler against the protocol's: a reason added there
 * fails to compile here until the client knows it.
 */
const KEYFRAME_REASONS: Record<KeyframeReason, true> = {
  resume: true,
  refused: true,
  interval: true,
};
const isKeyframeReason = (v: unknown): v is KeyframeReason =>
  typeof v === 'string' && Object.hasOwn(KEYFRAME_REASONS, v);

const DEFAULTS = {
  maxUnackedBytes: 64 * 1024 * 1024,
  retryWebSocketAfterMs: 30_000,
  httpBatchBytes: 1024 * 1024,
  pingIntervalMs: 5_000,
  livenessTimeoutMs: 30_000,
  requestTimeoutMs: 30_000,
};

/** Framegate's errors that no retry or transport change can cure. */
const FINAL_HTTP_ERRORS = new Set(['insufficient_scope', 'origin_not_allowed']);

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may be waiting on it (a client stopped before `close()`): that is not unhandled.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterS: number | null,
  ) {
    super(message);
  }
}

/**
 * A framegate session from the sending side. Frames go into an outbox (persistent when `outbox` is
 * given) and stay there until the server acknowledges them; after a reconnect the client resumes
 * the session and resends what the server does not have, which it drops if it has. Per frame: one
 * allocation (the message), no JSON, no await.
 */
export class FramegateClient extends Emitter<ClientEvents> {
  private readonly backoff: BackoffOptions;
  private readonly opts: typeof DEFAULTS;
  private readonly outbox = new Outbox();
  private state: ClientState = 'idle';
  private transport: TransportKind = 'websocket';
  private settings: OpenSettings | null = null;
  private session: PersistedSession | null = null;
  private startedAt: number | null = null;
  private token: string | undefined;
  private ticket: string | undefined;
  private tokenRefreshed = false;
  /** Frames not yet in the persistent outbox, and whether a write is under way. */
  private pending: Uint8Array[] = [];
  private flushing = false;
  private flushWaiters: (() => void)[] = [];
  /** Highest seq the outbox holds durably (without a store: every seq taken). */
  private persistedSeq = 0;
  private sentSeq = 0;
  private ackedSeq = 0;
  private closing = false;
  private closeSent = false;
  private full = false;
  private maxFps = Infinity;
  private frameIntervalMs = 0;
  private nextSlotAt = 0;
  /** Bumped whenever a connection is abandoned: callbacks of older ones are ignored. */
  private generation = 0;
  private socket: SocketConnection | null = null;
  private sessionLive = false;
  private attempt = 0;
  private reconnects = 0;
  private wsRetryAt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private lastReceivedAt = 0;
  private httpWake: (() => void) | null = null;
  private rttMs: number | null = null;
  private bytesSent = 0;
  private codec: string | null = null;
  private refusedFrames = 0;
  /** Highest seq counted in `refusedFrames`: a chunk resent after a lost ack is refused again. */
  private refusedSeq = 0;
  private fps = 0;
  private fpsWindowStart = 0;
  private fpsWindowFrames = 0;
  private readyWaiters: (() => void)[] = [];
  /** Business messages (`msg`) not yet acknowledged, by id; resent after every reconnect. */
  private readonly messages = new Map<string, unknown>();
  private opened = deferred<Opened & { resumed: boolean }>();
  private closed = deferred<Closed>();

  constructor(private readonly options: ClientOptions) {
    super();
    this.backoff = { ...DEFAULT_BACKOFF, ...options.reconnect };
    this.opts = {
      maxUnackedBytes: options.maxUnackedBytes ?? DEFAULTS.maxUnackedBytes,
      retryWebSocketAfterMs: options.retryWebSocketAfterMs ?? DEFAULTS.retryWebSocketAfterMs,
      httpBatchBytes: options.httpBatchBytes ?? DEFAULTS.httpBatchBytes,
      pingIntervalMs: options.pingIntervalMs ?? DEFAULTS.pingIntervalMs,
      livenessTimeoutMs: options.livenessTimeoutMs ?? DEFAULTS.livenessTimeoutMs,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
    };
    this.token = options.token;
    this.ticket = options.ticket;
  }

  /**
   * Starts streaming. When the persistent outbox holds a session (the app restarted, the page was
   * reloaded), that session is resumed and its unacknowledged frames are delivered first;
   * otherwise a new session is opened with `settings`. Resolves once the session is open.
   */
  async open(settings: OpenSettings): Promise<Opened & { resumed: boolean }> {
    if (this.state !== 'idle') {
      throw new ClientError('already_started', 'open() may be called once per client');
    }
    this.setState('connecting');
    this.settings = settings;
    if (this.options.outbox) {
      try {
        const snapshot = await this.options.outbox.load();
        this.restore(snapshot.session, snapshot.messages);
      } catch (err) {
        this.fail(new ClientError('outbox_failed', `could not read the outbox: ${String(err)}`));
        return this.opened.promise;
      }
    }
    this.connect();
    return this.opened.promise;
  }

  /** Continues a session known by id and resume token (e.g. kept by the app). */
  resume(
    sessionId: string,
    resumeToken: string,
    startedAt = Date.now(),
  ): Promise<Opened & { resumed: boolean }> {
    if (this.state !== 'idle') {
      return Promise.reject(new ClientError('already_started', 'resume() needs a fresh client'));
    }
    this.session = { sessionId, resumeToken, startedAt };
    this.startedAt = startedAt;
    this.setState('connecting');
    this.connect();
    return this.opened.promise;
  }

  /**
   * Takes a frame (a JPEG, one encoded video chunk, or an audio chunk) if the allowed rate and the
   * unacknowledged-bytes cap let it, and returns its seq; otherwise says why not. `pts` defaults
   * to the milliseconds since the session's first frame. `key` marks a compressed video chunk
   * that is a key frame (`EncodedVideoChunk.type === 'key'`): header flag bit 0, kept with the
   * message in the outbox, so a resent chunk carries it too.
   */
  trySend(
    payload: Uint8Array,
    track: Track = Track.Video,
    pts?: number,
    key = false,
  ): number | Refusal {
    if (
      this.state === 'idle' ||
      this.state === 'closed' ||
      this.state === 'failed' ||
      this.closing
    ) {
      throw new ClientError('not_streaming', `cannot send a frame in state ${this.state}`);
    }
    if (key && track !== Track.Video) {
      // The server closes the connection (4000) on a key flag outside compressed video.
      throw new ClientError('invalid_frame', 'only a video chunk may be flagged as a key frame');
    }
    // Sub-millisecond: at high allowed rates a slot is shorter than Date.now()'s resolution.
    const tick = performance.now();
    if (tick < this.nextSlotAt || this.frameIntervalMs === Infinity) {
      return 'rate';
    }
    if (this.full || this.outbox.bytes + payload.length > this.opts.maxUnackedBytes) {
      if (!this.full) {
        this.full = true;
        this.emit('backpressure', this.outbox.bytes);
      }
      return 'full';
    }
    this.nextSlotAt = Math.max(tick, this.nextSlotAt) + this.frameIntervalMs;
    const now = Date.now();
    this.startedAt ??= now;
    const seq = this.outbox.nextSeq;
    const message = new Uint8Array(MEDIA_HEADER_BYTES + payload.length);
    writeMediaHeader(message, track, seq, pts ?? now - this.startedAt, key ? FLAG_KEY : 0);
    message.set(payload, MEDIA_HEADER_BYTES);
    this.outbox.push(message);
    if (this.options.outbox) {
      this.pending.push(message);
      this.flush();
    } else {
      this.persistedSeq = seq;
      this.transmit();
      // An idle HTTP loop would otherwise sleep until its next keep-alive.
      this.wakeHttp();
    }
    return seq;
  }

  /** Sends a frame once the rate and the cap allow; resolves with its seq. */
  async send(
    payload: Uint8Array,
    track: Track = Track.Video,
    pts?: number,
    key = false,
  ): Promise<number> {
    for (;;) {
      const result = this.trySend(payload, track, pts, key);
      if (typeof result === 'number') {
        return result;
      }
      await this.ready();
    }
  }

  /** Resolves when `trySend` may take a frame again (rate slot free, below the byte cap). */
  ready(): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.state === 'closed' || this.state === 'failed') {
        resolve();
      } else if (this.full) {
        this.readyWaiters.push(resolve);
      } else if (this.frameIntervalMs === Infinity) {
        // Paused by `flow` maxFps 0: the next `flow` or reconnect wakes it.
        this.readyWaiters.push(resolve);
      } else {
        setTimeout(resolve, Math.max(0, this.nextSlotAt - performance.now()));
      }
    });
  }

  /**
   * Sends a business message (`msg`, stored with the session and shown in the recording's
   * captions). It is kept until `msg.ack` and resent after a reconnect; the server stores each
   * `id` once. Kept in memory only, not in the persistent outbox.
   */
  sendMessage(id: string, body: unknown): void {
    if (
      this.state === 'idle' ||
      this.state === 'closed' ||
      this.state === 'failed' ||
      this.closing
    ) {
      throw new ClientError('not_streaming', `cannot send a message in state ${this.state}`);
    }
    this.messages.set(id, body);
    if (this.socket && this.sessionLive && this.transport === 'websocket') {
      this.socket.send(JSON.stringify({ type: 'msg', id, body }));
    }
    this.wakeHttp();
  }

  /**
   * Resolves once every frame taken so far is in the persistent outbox (at once without one), e.g.
   * before a page is hidden: what is in it survives the app.
   */
  flushed(): Promise<void> {
    if (this.pending.length === 0 && !this.flushing) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.flushWaiters.push(resolve));
  }

  /**
   * Ends the session: every frame taken is delivered first, then `close`; resolves with `closed`
   * (the frame count and the recording), after which the outbox is empty.
   */
  close(): Promise<Closed> {
    if (this.state === 'idle') {
      return Promise.reject(new ClientError('not_streaming', 'nothing to close'));
    }
    if (!this.closing && this.state !== 'closed' && this.state !== 'failed') {
      this.closing = true;
      if (this.state === 'open') {
        this.setState('closing');
      }
      this.transmit();
      this.wakeHttp();
    }
    return this.closed.promise;
  }

  /**
   * Stops at once without ending the session (as a crash would, but tidily): a persistent outbox
   * keeps the unacknowledged frames and the resume token for the next client.
   */
  async stop(): Promise<void> {
    this.abandonConnection();
    this.clearTimers();
    if (this.state !== 'closed' && this.state !== 'failed') {
      const err = new ClientError('stopped', 'the client was stopped');
      this.setState('failed');
      this.opened.reject(err);
      this.closed.reject(err);
      this.wakeReady();
    }
    await this.options.outbox?.release?.();
  }

  /**
   * Epoch ms of the session's `pts` 0: a capture turns its frame times into `pts` with it. It is
   * kept with the session in the persistent outbox, so a reloaded page continues the same clock.
   * Null until the session is open or a frame is taken.
   */
  clockOrigin(): number | null {
    return this.startedAt;
  }

  /**
   * The `open` of the session in force: the one given to `open()`, or, when the persistent outbox
   * held a session, the one that session began with (a capture encodes to match it). Null when
   * unknown (a session continued by `resume()`, or an outbox written before codecs).
   */
  sessionSettings(): OpenSettings | null {
    return this.session ? (this.session.settings ?? null) : this.settings;
  }

  stats(): ClientStats {
    return {
      state: this.state,
      transport: this.transport,
      sessionId: this.session?.sessionId ?? null,
      fps: this.fps,
      maxFps: this.maxFps,
      ackedSeq: this.ackedSeq,
      sentSeq: this.sentSeq,
      nextSeq: this.outbox.nextSeq,
      rttMs: this.rttMs,
      bytesSent: this.bytesSent,
      outboxDepth: this.outbox.depth,
      unackedBytes: this.outbox.bytes,
      reconnects: this.reconnects,
      codec: this.codec,
      refusedFrames: this.refusedFrames,
    };
  }

  // --- outbox ---------------------------------------------------------------------------------

  private restore(session: PersistedSession | null, messages: Uint8Array[]): void {
    if (messages.length > 0) {
      const first = readMediaSeq(messages[0]);
      this.outbox.reset(first, messages);
      this.ackedSeq = first - 1;
      this.persistedSeq = first + messages.length - 1;
    }
    if (session) {
      this.session = session;
      this.startedAt = session.startedAt;
    }
  }

  /** Writes pending frames in batches: frames taken during one write go together in the next. */
  private flush(): void {
    const store = this.options.outbox;
    if (this.flushing || !store) {
      return;
    }
    this.flushing = true;
    const loop = async (): Promise<void> => {
      while (this.pending.length > 0 && this.state !== 'failed') {
        const batch = this.pending;
        this.pending = [];
        await store.append(batch);
        this.persistedSeq = Math.max(this.persistedSeq, readMediaSeq(batch[batch.length - 1]));
        this.transmit();
        this.wakeHttp();
      }
    };
    loop()
      .catch((err: unknown) => {
        this.fail(new ClientError('outbox_failed', `could not write the outbox: ${String(err)}`));
      })
      .finally(() => {
        this.flushing = false;
        if (this.pending.length > 0 && this.state !== 'failed') {
          // Taken between the loop's last check and now.
          this.flush();
          return;
        }
        const waiters = this.flushWaiters;
        this.flushWaiters = [];
        for (const wake of waiters) {
          wake();
        }
      });
  }

  private persist(op: (store: OutboxStore) => Promise<void>): void {
    const store = this.options.outbox;
    if (store) {
      op(store).catch((err: unknown) => {
        this.fail(new ClientError('outbox_failed', `could not write the outbox: ${String(err)}`));
      });
    }
  }

  private onAck(seq: number): void {
    if (seq <= this.ackedSeq) {
      return;
    }
    const acked = this.outbox.ack(seq);
    this.ackedSeq = seq;
    if (this.persistedSeq < seq) {
      this.persistedSeq = seq;
    }
    this.countAcked(acked);
    this.persist((store) => store.trim(seq));
    this.emit('ack', seq);
    if (this.full && this.outbox.bytes <= (this.opts.maxUnackedBytes * 3) / 4) {
      this.full = false;
      this.emit('drain');
      this.wakeReady();
    }
    this.wakeHttp();
  }

  private countAcked(frames: number): void {
    const now = Date.now();
    if (this.fpsWindowStart === 0) {
      this.fpsWindowStart = now;
    }
    this.fpsWindowFrames += frames;
    const elapsed = now - this.fpsWindowStart;
    if (elapsed >= 1000) {
      this.fps = Math.round((this.fpsWindowFrames * 10_000) / elapsed) / 10;
      this.fpsWindowStart = now;
      this.fpsWindowFrames = 0;
    }
  }

  private applyMaxFps(maxFps: number): void {
    this.maxFps = maxFps;
    this.frameIntervalMs = maxFps > 0 ? 1000 / maxFps : Infinity;
    this.nextSlotAt = 0;
    this.wakeReady();
  }

  private wakeReady(): void {
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const wake of waiters) {
      wake();
    }
  }

  // --- connections ----------------------------------------------------------------------------

  private connect(): void {
    this.abandonConnection();
    const generation = this.generation;
    if (this.transport === 'http' && Date.now() < this.wsRetryAt) {
      void this.connectHttp(generation);
    } else {
      this.setTransport('websocket');
      void this.connectWebSocket(generation);
    }
  }

  private abandonConnection(): void {
    this.generation++;
    this.sessionLive = false;
    this.stopPing();
    const socket = this.socket;
    this.socket = null;
    socket?.terminate();
    this.wakeHttp();
  }

  private async connectWebSocket(generation: number): Promise<void> {
    let url = `${this.options.url.replace(/^http/, 'ws').replace(/\/$/, '')}/v1/stream`;
    const headers: Record<string, string> = {};
    try {
      if (this.ticket) {
        url += `?ticket=${encodeURIComponent(this.ticket)}`;
        this.ticket = undefined;
      } else if (this.options.socket.canSetHeaders) {
        headers.authorization = `Bearer ${await this.currentToken()}`;
      } else {
        url += `?ticket=${encodeURIComponent(await this.fetchTicket())}`;
      }
    } catch (err) {
      if (generation === this.generation) {
        this.onHttpFailure(err);
      }
      return;
    }
    if (generation !== this.generation) {
      return;
    }
    const live = () => generation === this.generation;
    this.socket = this.options.socket.connect(url, SUBPROTOCOL, headers, {
      open: () => {
        if (!live()) {
          return;
        }
        this.lastReceivedAt = Date.now();
        this.startPing();
        this.socket?.send(
          JSON.stringify(
            this.session
              ? {
                  type: 'resume',
                  sessionId: this.session.sessionId,
                  resumeToken: this.session.resumeToken,
                }
              : { type: 'open', ...this.settings },
          ),
        );
      },
      message: (text) => {
        if (live()) {
          this.lastReceivedAt = Date.now();
          this.onServerMessage(text);
        }
      },
      close: (code, reason) => {
        if (live()) {
          this.socket = null;
          this.onSocketClosed(code, reason);
        }
      },
      refused: (status, error, retryAfterS) => {
        if (live()) {
          this.socket = null;
          this.onRefused(status, error, retryAfterS);
        }
      },
    });
  }

  private onServerMessage(text: string): void {
    let message: ServerMessage;
    try {
      message = JSON.parse(text) as ServerMessage;
    } catch {
      return this.fail(new ClientError('protocol_error', 'the server sent invalid JSON'));
    }
    const problem = malformed(message);
    if (problem) {
      return this.fail(new ClientError('protocol_error', `the server sent ${problem}`));
    }
    switch (message.type) {
      case 'opened':
        void this.onOpened(message);
        return;
      case 'ack':
        return this.onAck(message.seq);
      case 'flow':
        this.applyMaxFps(message.maxFps);
        this.emit('flow', { maxFps: message.maxFps, reason: message.reason });
        return;
      case 'pong':
        if (typeof message.t === 'number') {
          this.rttMs = Date.now() - message.t;
        }
        return;
      case 'error':
        return this.onServerError(message);
      case 'closed':
        return this.onClosed(message);
      case 'msg':
        this.emit('message', { id: message.id, body: message.body });
        return;
      case 'msg.ack':
        return this.onMessageAck(message.id);
      case 'keyframe':
        this.emit('keyframe', message.reason);
        return;
    }
  }

  private onMessageAck(id: string): void {
    if (this.messages.delete(id)) {
      this.emit('messageAck', id);
      this.transmit();
      this.wakeHttp();
    }
  }

  private onServerError(error: { code: string; message: string; seq?: number }): void {
    this.emit('serverError', { code: error.code, message: error.message, seq: error.seq });
    if (error.code === 'codec_not_allowed' && this.session === null) {
      return this.refuseOpen(new ClientError(error.code, error.message));
    }
    if (error.code === 'bad_frame' && error.seq !== undefined) {
      return this.onBadFrame(error.seq, error.message);
    }
    // bad_image settles its frame (the ack covers it); the session goes on.
    if (error.seq !== undefined && error.code !== 'bad_image') {
      // A frame refused by the pts rule is not stored, and every frame after it is dropped until
      // it is resent with another pts: only the app, which chose the pts, can do that.
      this.fail(new ClientError(error.code, error.message));
    }
  }

  /** The chunk `seq` is settled as refused: the server's next ack covers it, nothing is resent. */
  private onBadFrame(seq: number, message: string): void {
    if (seq > this.refusedSeq) {
      this.refusedSeq = seq;
      this.refusedFrames++;
    }
    this.emit('badFrame', { seq, message });
  }

  /**
   * The server refused the `open` (`codec_not_allowed`): no session began. The client is idle
   * again, so that `open()` may try other settings (the capture falls back to JPEG). Frames taken
   * meanwhile belonged to no session: they are dropped, or they would start the next one.
   */
  private refuseOpen(err: ClientError): void {
    if (this.closing) {
      return this.fail(err);
    }
    this.abandonConnection();
    this.clearTimers();
    this.settings = null;
    this.startedAt = null;
    this.attempt = 0;
    if (this.outbox.nextSeq > 1 || this.pending.length > 0) {
      this.outbox.reset(1, []);
      this.pending = [];
      this.persistedSeq = 0;
      this.sentSeq = 0;
      this.ackedSeq = 0;
      this.persist((store) => store.clear());
    }
    const opened = this.opened;
    this.opened = deferred();
    this.setState('idle');
    opened.reject(err);
    this.wakeReady();
  }

  /**
   * The session is open on this connection. With a persistent outbox, frames go out only once
   * the session (id, resume token) is stored too: frames of a session the outbox does not name
   * would be sent again, in a new session, after a crash.
   */
  private async onOpened(opened: Opened): Promise<void> {
    const resumed = this.session !== null;
    // A resumed session keeps the settings it began with, whatever this client was given.
    const settings = this.session ? this.session.settings : (this.settings ?? undefined);
    const session: PersistedSession = {
      sessionId: opened.sessionId,
      resumeToken: opened.resumeToken,
      startedAt: (this.startedAt ??= Date.now()),
      ...(settings ? { settings } : {}),
    };
    this.session = session;
    this.codec = (opened as Partial<Opened>).media?.video.codec ?? 'jpeg';
    this.attempt = 0;
    this.tokenRefreshed = false;
    this.applyMaxFps(opened.limits.maxFps);
    this.onAck(opened.lastSeq);
    this.sentSeq = opened.lastSeq;
    this.closeSent = false;
    const store = this.options.outbox;
    if (store) {
      const generation = this.generation;
      try {
        await store.saveSession(session);
      } catch (err) {
        return this.fail(
          new ClientError('outbox_failed', `could not write the outbox: ${String(err)}`),
        );
      }
      if (generation !== this.generation) {
        return;
      }
    }
    this.sessionLive = true;
    if (this.transport === 'websocket') {
      for (const [id, body] of this.messages) {
        this.socket?.send(JSON.stringify({ type: 'msg', id, body }));
      }
    }
    this.setState(this.closing ? 'closing' : 'open');
    const event = { ...opened, resumed };
    this.emit('opened', event);
    this.opened.resolve(event);
    this.transmit();
  }

  /** WebSocket: writes every durable frame not yet sent on this connection, then `close`. */
  private transmit(): void {
    const socket = this.socket;
    if (!socket || !this.sessionLive || this.transport !== 'websocket') {
      return;
    }
    while (this.sentSeq < this.persistedSeq) {
      const message = this.outbox.at(this.sentSeq + 1);
      if (!message) {
        break;
      }
      socket.send(message);
      this.sentSeq++;
      this.bytesSent += message.length;
    }
    if (
      this.closing &&
      !this.closeSent &&
      this.pending.length === 0 &&
      this.messages.size === 0 &&
      this.sentSeq === this.outbox.nextSeq - 1
    ) {
      this.closeSent = true;
      socket.send('{"type":"close"}');
    }
  }

  private onClosed(closed: Closed): void {
    this.clearTimers();
    this.setState('closed');
    const done = () => {
      this.emit('closed', closed);
      this.closed.resolve(closed);
      this.wakeReady();
    };
    const store = this.options.outbox;
    if (store) {
      store.clear().then(done, (err: unknown) => {
        this.emit(
          'error',
          new ClientError(
            'outbox_failed',
            `closed, but could not clear the outbox: ${String(err)}`,
          ),
        );
        done();
      });
    } else {
      done();
    }
  }

  private onSocketClosed(code: number, reason: string): void {
    this.sessionLive = false;
    this.stopPing();
    if (this.state === 'closed' || this.state === 'failed') {
      return;
    }
    const action = closeAction(code);
    switch (action) {
      case 'done':
      case 'reconnect':
        return this.scheduleReconnect(`close ${code}${reason ? ` ${reason}` : ''}`);
      case 'refresh_token':
        return this.refreshToken(code, `the access token expired (close ${code})`);
      case 'final':
        if ((code as CloseCode) === CloseCode.UnknownSession) {
          // The session is gone for good: a later client must not try to resume it again.
          this.persist((store) => store.clear());
        }
        return this.fail(
          new ClientError(closeCodeName(code), reason || `closed with ${code}`, code),
        );
    }
  }

  private onRefused(status: number, error: string | null, retryAfterS: number | null): void {
    const cause = `upgrade refused with ${status || 'no answer'}${error ? ` ${error}` : ''}`;
    if (status === 401) {
      return this.refreshToken(
        undefined,
        `the server refused the credentials (401 ${error ?? ''})`,
      );
    }
    if (error && FINAL_HTTP_ERRORS.has(error)) {
      return this.fail(new ClientError(error, cause, undefined, status));
    }
    if (status === 429 || status === 503) {
      return this.scheduleReconnect(cause, (retryAfterS ?? 0) * 1000);
    }
    if (this.token || this.options.getToken) {
      // Something between us and the server refuses WebSockets: the same session goes on over
      // HTTP, and the WebSocket is tried again later.
      this.setTransport('http');
      this.wsRetryAt = Date.now() + this.opts.retryWebSocketAfterMs;
      this.connect();
      return;
    }
    this.scheduleReconnect(cause);
  }

  private refreshToken(closeCode: number | undefined, why: string): void {
    if (!this.options.getToken || this.tokenRefreshed) {
      return this.fail(
        new ClientError('invalid_token', why, closeCode, closeCode ? undefined : 401),
      );
    }
    this.tokenRefreshed = true;
    this.token = undefined;
    this.connect();
  }

  private scheduleReconnect(cause: string, minDelayMs = 0): void {
    this.attempt++;
    if (this.attempt > this.backoff.maxAttempts) {
      return this.fail(
        new ClientError(
          'reconnect_failed',
          `gave up after ${this.backoff.maxAttempts} attempts; last: ${cause}`,
        ),
      );
    }
    this.abandonConnection();
    const delayMs = Math.max(minDelayMs, backoffDelay(this.backoff, this.attempt));
    this.reconnects++;
    this.setState('reconnecting');
    this.emit('reconnecting', { attempt: this.attempt, delayMs, cause });
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delayMs);
  }

  private startPing(): void {
    this.stopPing();
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastReceivedAt > this.opts.livenessTimeoutMs) {
        // No FIN arrives from a dead network: drop the connection and resume elsewhere.
        const socket = this.socket;
        this.socket = null;
        socket?.terminate();
        this.onSocketClosed(1006, 'no sign of life');
        return;
      }
      this.socket?.send(`{"type":"ping","t":${Date.now()}}`);
    }, this.opts.pingIntervalMs);
  }

  private stopPing(): void {
    if (this.pingTimer) {
      clearInterval(this.pingTimer);
      this.pingTimer = null;
    }
  }

  // --- HTTP fallback --------------------------------------------------------------------------

  private async connectHttp(generation: number): Promise<void> {
    this.setTransport('http');
    try {
      let opened: Opened;
      if (this.session) {
        // An empty body answers the current ack: where to resend from.
        const { ack, media } = await this.postFrames([]);
        opened = {
          sessionId: this.session.sessionId,
          resumeToken: this.session.resumeToken,
          lastSeq: ack,
          ack: { intervalMs: 0, maxFrames: 0 },
          // HTTP has no `opened` on resume: the rate allowed so far stands.
          limits: { maxFrameBytes: 0, maxFps: this.maxFps },
          media,
        };
      } else {
        opened = await this.request<Opened>(
          '/v1/sessions',
          'application/json',
          JSON.stringify(this.settings),
          (body) => malformed({ type: 'opened', ...body }),
        );
      }
      if (generation !== this.generation) {
        return;
      }
      await this.onOpened(opened);
      if (generation === this.generation && this.sessionLive) {
        await this.httpLoop(generation);
      }
    } catch (err) {
      if (generation === this.generation) {
        this.onHttpFailure(err);
      }
    }
  }

  private async httpLoop(generation: number): Promise<void> {
    while (generation === this.generation) {
      if (Date.now() >= this.wsRetryAt && !this.closing) {
        this.connect();
        return;
      }
      if (this.sentSeq < this.persistedSeq) {
        const batch: Uint8Array[] = [];
        let bytes = 0;
        for (let seq = this.sentSeq + 1; seq <= this.persistedSeq; seq++) {
          const message = this.outbox.at(seq);
          if (!message || (batch.length > 0 && bytes + message.length > this.opts.httpBatchBytes)) {
            break;
          }
          batch.push(message);
          bytes += message.length;
        }
        const { ack } = await this.postFrames(batch);
        if (generation !== this.generation) {
          return;
        }
        this.bytesSent += bytes;
        this.sentSeq = Math.max(this.sentSeq, ack);
        this.onAck(ack);
      } else if (this.messages.size > 0) {
        const [id, body] = this.messages.entries().next().value as [string, unknown];
        await this.request<{ id: string }>(
          `/v1/sessions/${this.session?.sessionId}/messages`,
          'application/json',
          JSON.stringify({ id, body }),
          (answer) => malformed({ type: 'msg.ack', id: answer.id }),
        );
        if (generation !== this.generation) {
          return;
        }
        this.onMessageAck(id);
      } else if (this.closing && this.sentSeq === this.outbox.nextSeq - 1) {
        const closed = await this.request<Closed>(
          `/v1/sessions/${this.session?.sessionId}/close`,
          'application/json',
          '{}',
          (body) => malformed({ type: 'closed', ...body }),
        );
        if (generation === this.generation) {
          this.onClosed(closed);
        }
        return;
      } else {
        const timedOut = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(true), this.opts.pingIntervalMs);
          this.httpWake = () => {
            clearTimeout(timer);
            resolve(false);
          };
        });
        this.httpWake = null;
        if (timedOut && generation === this.generation) {
          // Keeps the HTTP-attached session from being interrupted while the app sends nothing.
          const started = Date.now();
          this.onAck((await this.postFrames([])).ack);
          this.rttMs = Date.now() - started;
        }
      }
    }
  }

  private wakeHttp(): void {
    this.httpWake?.();
  }

  /**
   * Posts a frames body; its answer's refusals (`bad_frame`) and key-frame request are reported
   * as their WebSocket messages are.
   */
  private async postFrames(messages: Uint8Array[]): Promise<FramesAck> {
    const answer = await this.request<FramesAck>(
      `/v1/sessions/${this.session?.sessionId}/frames`,
      FRAMES_CONTENT_TYPE,
      encodeFramesBody(messages),
      framesAnswerProblem,
    );
    this.codec = (answer as Partial<FramesAck>).media?.video.codec ?? this.codec;
    for (const refused of answer.refused ?? []) {
      this.emit('serverError', { code: refused.code, message: refused.message, seq: refused.seq });
      if (refused.code === 'bad_frame') {
        this.onBadFrame(refused.seq, refused.message);
      }
    }
    if (answer.keyframe) {
      this.emit('keyframe', answer.keyframe);
    }
    return answer;
  }

  /** POSTs to the service; the answer is checked by `problem` (null when it is well formed). */
  private async request<T>(
    path: string,
    contentType: string,
    body: string | Uint8Array,
    problem: (body: Record<string, unknown>) => string | null,
  ): Promise<T> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${await this.currentToken()}`,
      'content-type': contentType,
    };
    if (this.session) {
      headers['x-resume-token'] = this.session.resumeToken;
    }
    const res = await fetch(`${this.options.url.replace(/\/$/, '')}${path}`, {
      method: 'POST',
      headers,
      // Both DOM's and Node's fetch take a Uint8Array; their type names differ.
      body: body as NonNullable<Parameters<typeof fetch>[1]>['body'],
      signal: AbortSignal.timeout(this.opts.requestTimeoutMs),
    });
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      // A proxy's HTML error page: the status says enough.
    }
    if (!res.ok) {
      const error = parsed as { error?: unknown; message?: unknown } | null;
      const retryAfter = Number(res.headers.get('retry-after'));
      throw new HttpError(
        res.status,
        typeof error?.error === 'string' ? error.error : `http_${res.status}`,
        typeof error?.message === 'string' ? error.message : `${path} answered ${res.status}`,
        Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
      );
    }
    const shape =
      parsed !== null && typeof parsed === 'object'
        ? problem(parsed as Record<string, unknown>)
        : 'a response that is not a JSON object';
    if (shape) {
      throw new ClientError('protocol_error', `${path} answered ${shape}`);
    }
    return parsed as T;
  }

  private onHttpFailure(err: unknown): void {
    if (err instanceof ClientError) {
      return this.fail(err);
    }
    if (!(err instanceof HttpError)) {
      // Network loss or a timeout: the same transport again after a delay.
      return this.scheduleReconnect(`network: ${String(err)}`);
    }
    const cause = `${err.status} ${err.code}: ${err.message}`;
    if (err.code === 'codec_not_allowed' && this.session === null) {
      this.emit('serverError', { code: err.code, message: err.message });
      return this.refuseOpen(new ClientError(err.code, err.message, undefined, err.status));
    }
    if (err.status === 401) {
      return this.refreshToken(undefined, `the server refused the credentials (${cause})`);
    }
    if (err.status === 429 || err.status === 409 || err.status >= 500) {
      return this.scheduleReconnect(cause, (err.retryAfterS ?? 0) * 1000);
    }
    if (err.status === 404) {
      this.persist((store) => store.clear());
    }
    this.fail(new ClientError(err.code, err.message, undefined, err.status));
  }

  // --- credentials ----------------------------------------------------------------------------

  private async currentToken(): Promise<string> {
    if (this.token) {
      return this.token;
    }
    if (this.options.getToken) {
      this.token = await this.options.getToken();
      return this.token;
    }
    throw new ClientError(
      'no_token',
      this.options.ticket
        ? 'the ticket was used; reconnecting needs a token or getToken'
        : 'no token, ticket or getToken given',
    );
  }

  /** A single-use ticket for a browser WebSocket (`POST /v1/tickets` with the access token). */
  private async fetchTicket(): Promise<string> {
    const { ticket } = await this.request<{ ticket: string }>(
      '/v1/tickets',
      'application/json',
      '{}',
      (body) => (typeof body.ticket === 'string' ? null : 'a ticket response without a ticket'),
    );
    return ticket;
  }

  // --- state ----------------------------------------------------------------------------------

  private fail(err: ClientError): void {
    if (this.state === 'failed' || this.state === 'closed') {
      return;
    }
    this.abandonConnection();
    this.clearTimers();
    this.setState('failed');
    this.emit('error', err);
    this.opened.reject(err);
    this.closed.reject(err);
    this.wakeReady();
  }

  private clearTimer(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private clearTimers(): void {
    this.clearTimer();
    this.stopPing();
  }

  private setState(state: ClientState): void {
    if (state !== this.state) {
      this.state = state;
      this.emit('state', state);
    }
  }

  private setTransport(transport: TransportKind): void {
    if (transport !== this.transport) {
      this.transport = transport;
      this.emit('transport', transport);
    }
  }
}

/** The stable error codes of final closes, as the server audits them. */
const FINAL_CLOSE_NAMES: Partial<Record<number, string>> = {
  [CloseCode.TooLarge]: 'message_too_large',
  [CloseCode.Protocol]: 'protocol_error',
  [CloseCode.Kicked]: 'kicked',
  [CloseCode.UnknownSession]: 'unknown_session',
  [CloseCode.Replaced]: 'replaced',
  [CloseCode.Quota]: 'quota_exceeded',
};

function closeCodeName(code: number): string {
  return FINAL_CLOSE_NAMES[code] ?? `closed_${code}`;
}

const isSeq = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
const isText = (v: unknown): boolean => typeof v === 'string';

/**
 * What is wrong with a server message, in the fields the client relies on; null when nothing is.
 * Unknown types pass: a newer server may send more (the client ignores them).
 */
function malformed(m: Record<string, unknown> | ServerMessage): string | null {
  const f = m as Record<string, unknown>;
  const bad = (what: string) => `a malformed ${String(f.type)} (${what})`;
  switch (f.type) {
    case 'opened': {
      const limits = f.limits as { maxFps?: unknown } | undefined;
      if (!isText(f.sessionId) || !isText(f.resumeToken) || !isSeq(f.lastSeq)) {
        return bad('sessionId, resumeToken, lastSeq');
      }
      return typeof limits?.maxFps === 'number' && limits.maxFps >= 0 ? null : bad('limits');
    }
    case 'ack':
      return isSeq(f.seq) ? null : bad('seq');
    case 'flow':
      return typeof f.maxFps === 'number' && f.maxFps >= 0 && isText(f.reason)
        ? null
        : bad('maxFps, reason');
    case 'error':
      return isText(f.code) && isText(f.message) && (f.seq === undefined || isSeq(f.seq))
        ? null
        : bad('code, message, seq');
    case 'closed': {
      const recording = f.recording as { status?: unknown } | undefined;
      return isText(f.sessionId) && isSeq(f.frames) && isText(recording?.status)
        ? null
        : bad('sessionId, frames, recording');
    }
    case 'msg':
    case 'msg.ack':
      return isText(f.id) ? null : bad('id');
    case 'keyframe':
      return isKeyframeReason(f.reason) ? null : bad('reason');
    default:
      return typeof f.type === 'string' ? null : 'a message without a type';
  }
}

/** What is wrong with the answer of `POST /v1/sessions/{id}/frames`; null when nothing is. */
function framesAnswerProblem(body: Record<string, unknown>): string | null {
  const bad = (what: string) => `a malformed frames answer (${what})`;
  if (!isSeq(body.ack)) {
    return bad('ack');
  }
  const refused = body.refused;
  if (
    refused !== undefined &&
    !(
      Array.isArray(refused) &&
      refused.every((r: Record<string, unknown> | null) => {
        return (
          r !== null && isSeq(r.seq) && (r.seq as number) > 0 && isText(r.code) && isText(r.message)
        );
      })
    )
  ) {
    return bad('refused');
  }
  return body.keyframe === undefined || isKeyframeReason(body.keyframe) ? null : bad('keyframe');
}
