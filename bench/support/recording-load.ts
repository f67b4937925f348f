import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { encodeMediaMessage, FLAG_KEY, Track } from '../../src/protocol/media-header';
import type { Closed, ClosedRecording } from '../../src/protocol/messages';
import type { RecordingStatus } from '../../src/media/recording.service';
import { StreamClient } from '../../test/support/stream-client';
import { FRAME_HEIGHT, FRAME_WIDTH, type FramePool } from './recording-frames';

/** A real camera's interval: 10 fps. */
const FRAME_INTERVAL_MS = 100;
const CAPTURE_FPS = 1000 / FRAME_INTERVAL_MS;
/** Sessions opened at once while a trial connects its clients. */
const CONNECT_CONCURRENCY = 16;
/** The admin poll's cadence during a paced trial. */
const POLL_MS = 1_000;
/** How long a `close` may take before the session counts as lost (a backlog may be encoding). */
const CLOSE_TIMEOUT_MS = 120_000;
/** How long recorders may take to leave the service's list after their sessions closed. */
const SETTLE_TIMEOUT_MS = 60_000;
/**
 * The "keeps up" rule: over the last seconds of a run, at most this many frames per session wait
 * for the encoder (`backlogFrames - encodingFrames`: frames inside ffmpeg are its pipeline, about
 * one per session even when it keeps up, since ffmpeg holds each JPEG until the next begins).
 */
const KEEP_UP_TAIL_S = 5;
const KEEP_UP_FRAMES_PER_SESSION = 2;
/**
 * ...and the growth of the whole backlog (frames inside the encoders included, so an overload
 * shows as soon as their stdin buffers start to fill) allowed over the second half, in frames per
 * second per session: a backlog that is still small but rising (0.05/s is half a frame per session
 * over 10 s) is a recorder falling behind.
 */
const KEEP_UP_GROWTH_PER_SESSION = 0.05;

const OPEN_BODY = { video: { width: FRAME_WIDTH, height: FRAME_HEIGHT, fps: CAPTURE_FPS } };

/** What every session of a paced trial opens with and sends. */
export interface PacedMedia {
  /** The body of session `session`'s `open`. */
  open(session: number): Record<string, unknown>;
  /**
   * The media message of session `session`'s frame `seq` (from 1) with this pts. Shared buffers:
   * send it before the next call (FramePool says why that is safe).
   */
  message(session: number, seq: number, ptsMs: number): Buffer;
}

/**
 * JPEG sessions: each starts at a different JPEG of the pool (`seq + session`), so the encoders
 * do not all work on the same image at once. `open` defaults to the pool's 640×480 at 10 fps.
 */
export function jpegMedia(pool: FramePool, open: Record<string, unknown> = OPEN_BODY): PacedMedia {
  return {
    open: () => open,
    message: (session, seq, ptsMs) => pool.frame(seq + session, seq, ptsMs),
  };
}

/**
 * Compressed sessions: session `i` sends stream `i % streams.length`, its chunks in order from its
 * first (a key frame), cycling; each stream must be a closed loop whose first chunk a decoder can
 * start from after its last. Streams whose key frames fall at different times (the same scene
 * from another starting frame) keep the sessions from all sending key frames at once, as
 * independent cameras do not. Messages are built once, as FramePool's are.
 */
export function chunkMedia(
  streams: ReadonlyArray<{
    openVideo: Record<string, unknown>;
    chunks: ReadonlyArray<{ data: Buffer; key: boolean }>;
  }>,
): PacedMedia {
  const messages = streams.map((stream) =>
    stream.chunks.map((chunk) =>
      encodeMediaMessage(Track.Video, 1, 0, chunk.data, chunk.key ? FLAG_KEY : 0),
    ),
  );
  return {
    open: (session) => ({ video: streams[session % streams.length].openVideo }),
    message: (session, seq, ptsMs) => {
      const list = messages[session % messages.length];
      const message = list[(seq - 1) % list.length];
      message.writeUInt32BE(seq, 4);
      message.writeUInt32BE(ptsMs >>> 0, 8);
      return message;
    },
  };
}

export async function recordingStatus(
  baseUrl: string,
  adminToken: string,
): Promise<RecordingStatus> {
  const res = await fetch(new URL('/v1/admin/recording', baseUrl), {
    headers: { authorization: `Bearer ${adminToken}` },
    signal: AbortSignal.timeout(5_000),
  });
  if (!res.ok) {
    throw new Error(`GET /v1/admin/recording answered ${res.status}`);
  }
  return (await res.json()) as RecordingStatus;
}

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  samples: number;
}

export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  // Nearest rank: with 10 samples p95 is the largest, as it honestly is.
  const at = (p: number): number =>
    sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
  return {
    p50: round(at(0.5), 1),
    p95: round(at(0.95), 1),
    p99: round(at(0.99), 1),
    max: round(sorted.at(-1) ?? 0, 1),
    samples: sorted.length,
  };
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

interface BacklogSample {
  /** Seconds since the first frame of the trial. */
  t: number;
  /** Frames stored and not yet out of an encoder, all sessions. */
  total: number;
  /** Of those, the frames not yet given to an encoder. */
  queued: number;
  maxPerSession: number;
  fromSpool: number;
  /** Frames sent and not yet acknowledged, the worst session. */
  ackLag: number;
  waiting: number;
  active: number;
  recorders: number;
}

export interface PacedTrialOptions {
  baseUrl: string;
  sessions: number;
  seconds: number;
  media: PacedMedia;
  tokenFor: (i: number) => string;
  adminToken: string;
  /** Called when the first session starts sending and when the last one stops. */
  onStreaming?: (edge: 'start' | 'end') => void;
  /**
   * Also judge the acks: the trial keeps up only if no session ever had more than this many
   * frames unacknowledged in the second half. Unset: acks are reported, not judged.
   */
  maxAckLagFrames?: number;
  /**
   * Close the sessions one by one over this many ms after the streaming time, each sending until
   * its own close, so every `close` is timed under the trial's load. Unset or 0: all at once.
   */
  closeOverMs?: number;
}

export interface PacedTrialResult {
  sessions: number;
  seconds: number;
  sessionIds: string[];
  keptUp: boolean;
  /** Why it did not keep up (empty when it did). */
  why: string[];
  sentFrames: number;
  /** Frames per second actually sent, all sessions together and per session. */
  sentFps: number;
  perSessionFps: number;
  backlog: {
    /** Frames waiting for an encoder, all sessions, over the last KEEP_UP_TAIL_S seconds: max. */
    maxQueuedTail: number;
    /** Total of every session's backlog over the last KEEP_UP_TAIL_S seconds: its maximum. */
    maxTotalTail: number;
    allowedTail: number;
    allowedSlope: number;
    maxTotalSecondHalf: number;
    /** Least-squares slope of the total over the second half, frames per second. */
    slopeSecondHalf: number;
    maxPerSession: number;
    fromSpoolSecondHalf: number;
    fromSpoolEver: number;
    pendingMax: number;
    /** The total at each poll, one a second. */
    series: number[];
    pollErrors: number;
  };
  client: {
    flows: Record<string, number>;
    /** Key-frame requests (compressed sessions), by reason. */
    keyframes: Record<string, number>;
    errors: Record<string, number>;
    /** Connections that ended before `close`, by close code. */
    earlyCloses: Record<string, number>;
    /** Frames sent but not yet acknowledged when sending stopped: the worst session. */
    maxAckLag: number;
    /** The same at each poll in the second half: its maximum, and the limit judged (if any). */
    maxAckLagSecondHalf: number;
    ackLagLimit: number | null;
    /** The worst session's unacknowledged frames at each poll, one a second. */
    ackLagSeries: number[];
    /** Frame sent → the first ack covering it, every frame sent in the streaming time. */
    ackMs: Percentiles;
    /** The same for the frames sent in its second half, where "keeps up" is judged. */
    ackMsSecondHalf: Percentiles;
  };
  close: { statuses: Record<string, number>; ms: Percentiles };
}

/**
 * `sessions` clients, each streaming one session at a real 10 fps (its own 100 ms interval,
 * staggered across the interval as independent cameras are; pts is the real capture time) for
 * `seconds`, while the service's recorders are polled once a second; then every session is closed.
 */
export async function pacedTrial(o: PacedTrialOptions): Promise<PacedTrialResult> {
  const clients: StreamClient[] = [];
  const ids: string[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    for (let first = 0; first < o.sessions; first += CONNECT_CONCURRENCY) {
      const batch = Array.from(
        { length: Math.min(CONNECT_CONCURRENCY, o.sessions - first) },
        async (_, k) => {
          const client = await StreamClient.connect(o.baseUrl, { token: o.tokenFor(first + k) });
          clients[first + k] = client;
          ids[first + k] = (await client.open(o.media.open(first + k))).sessionId;
        },
      );
      await Promise.all(batch);
    }
    const earlyCloses: Record<string, number> = {};
    let closing = false;
    for (const client of clients) {
      void client.closed.then(({ code }) => {
        if (!closing) {
          earlyCloses[code] = (earlyCloses[code] ?? 0) + 1;
        }
      });
    }

    const seqs = new Array<number>(o.sessions).fill(0);
    const stopped = new Array<boolean>(o.sessions).fill(false);
    // When each frame went out, by seq, for the ack latencies of the streaming time.
    const framesInTime = Math.ceil(o.seconds * CAPTURE_FPS) + 1;
    const sentAt = clients.map(() => new Float64Array(framesInTime + 1));
    const ackMs: number[] = [];
    const ackMsSecondHalf: number[] = [];
    o.onStreaming?.('start');
    const t0 = performance.now();
    const endAt = t0 + o.seconds * 1000;
    const halfAt = t0 + o.seconds * 500;
    clients.forEach((client, i) => {
      const ws = client.ws;
      let acked = 0;
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary || acked >= framesInTime || !data.includes('"ack"')) {
          return;
        }
        const message = JSON.parse(data.toString()) as { type: string; seq?: number };
        if (message.type !== 'ack' || message.seq === undefined) {
          return;
        }
        const now = performance.now();
        const upTo = Math.min(message.seq, framesInTime, seqs[i]);
        for (; acked < upTo; acked++) {
          const at = sentAt[i][acked + 1];
          if (at > 0) {
            ackMs.push(now - at);
            if (at >= halfAt) {
              ackMsSecondHalf.push(now - at);
            }
          }
        }
      });
      const start = t0 + (i * FRAME_INTERVAL_MS) / o.sessions;
      // pts counts from the first frame actually sent (a timer may fire a little early, and a
      // pts must never be negative).
      let firstSentAt = -1;
      // Each frame is due at start + k × 100 ms: a late timer does not push the later frames back
      // (as setInterval would), so every session really sends 10 fps.
      const send = (): void => {
        if (ws.readyState !== WebSocket.OPEN || stopped[i]) {
          return;
        }
        const now = performance.now();
        if (firstSentAt < 0) {
          firstSentAt = now;
        }
        const seq = ++seqs[i];
        if (seq <= framesInTime && now < endAt) {
          sentAt[i][seq] = now;
        }
        ws.send(o.media.message(i, seq, Math.round(now - firstSentAt)));
        timers[i] = setTimeout(send, start + seq * FRAME_INTERVAL_MS - performance.now());
      };
      timers[i] = setTimeout(send, start - performance.now());
    });

    const mine = new Set(ids);
    const samples: BacklogSample[] = [];
    let pollErrors = 0;
    for (let k = 1; t0 + k * POLL_MS <= endAt; k++) {
      await sleep(t0 + k * POLL_MS - performance.now());
      try {
        const status = await recordingStatus(o.baseUrl, o.adminToken);
        const recorders = status.recorders.filter((r) => mine.has(r.sessionId));
        let ackLag = 0;
        clients.forEach((client, i) => {
          ackLag = Math.max(ackLag, seqs[i] - client.maxAck);
        });
        samples.push({
          t: (performance.now() - t0) / 1000,
          total: recorders.reduce((sum, r) => sum + r.backlogFrames, 0),
          queued: recorders.reduce((sum, r) => sum + r.backlogFrames - r.encodingFrames, 0),
          maxPerSession: Math.max(0, ...recorders.map((r) => r.backlogFrames)),
          fromSpool: recorders.filter((r) => r.fromSpool).length,
          ackLag,
          waiting: status.encoders.waiting,
          active: status.encoders.active,
          recorders: recorders.length,
        });
      } catch {
        pollErrors++;
      }
    }
    await sleep(endAt - performance.now());
    const sendSeconds = (performance.now() - t0) / 1000;
    const closeOverMs = o.closeOverMs ?? 0;
    const stop = (i: number): void => {
      stopped[i] = true;
      clearTimeout(timers[i]);
    };
    if (closeOverMs <= 0) {
      clients.forEach((_, i) => stop(i));
    }
    o.onStreaming?.('end');
    const sentFrames = seqs.reduce((a, b) => a + b, 0);

    const flows: Record<string, number> = {};
    const errors: Record<string, number> = {};
    const keyframes: Record<string, number> = {};
    let maxAckLag = 0;
    clients.forEach((client, i) => {
      let acked = 0;
      for (const m of client.messages) {
        if (m.type === 'ack') {
          acked = Math.max(acked, m.seq);
        } else if (m.type === 'flow') {
          flows[m.reason] = (flows[m.reason] ?? 0) + 1;
        } else if (m.type === 'error') {
          errors[m.code] = (errors[m.code] ?? 0) + 1;
        } else if (m.type === 'keyframe') {
          keyframes[m.reason] = (keyframes[m.reason] ?? 0) + 1;
        }
      }
      maxAckLag = Math.max(maxAckLag, seqs[i] - acked);
      // Only what comes after `close` matters from here on.
      client.messages.length = 0;
    });

    closing = true;
    const statuses: Record<string, number> = {};
    const closeMs: number[] = [];
    await Promise.all(
      clients.map(async (client, i) => {
        if (closeOverMs > 0) {
          await sleep((i * closeOverMs) / o.sessions);
          stop(i);
        }
        const sent = performance.now();
        client.send({ type: 'close' });
        try {
          const closed = await client.next('closed', CLOSE_TIMEOUT_MS);
          closeMs.push(performance.now() - sent);
          statuses[closed.recording.status] = (statuses[closed.recording.status] ?? 0) + 1;
        } catch {
          statuses.noClosed = (statuses.noClosed ?? 0) + 1;
        }
      }),
    );
    await settle(o.baseUrl, o.adminToken);

    const half = samples.filter((s) => s.t >= o.seconds / 2);
    const tail = samples.filter((s) => s.t >= o.seconds - KEEP_UP_TAIL_S);
    const maxOf = (list: BacklogSample[], pick: (s: BacklogSample) => number): number =>
      Math.max(0, ...list.map(pick));
    const allowedTail = KEEP_UP_FRAMES_PER_SESSION * o.sessions;
    const backlog = {
      maxQueuedTail: maxOf(tail, (s) => s.queued),
      maxTotalTail: maxOf(tail, (s) => s.total),
      allowedTail,
      allowedSlope: round(Math.max(1, KEEP_UP_GROWTH_PER_SESSION * o.sessions), 2),
      maxTotalSecondHalf: maxOf(half, (s) => s.total),
      slopeSecondHalf: round(slope(half.map((s) => [s.t, s.total])), 2),
      maxPerSession: maxOf(samples, (s) => s.maxPerSession),
      fromSpoolSecondHalf: maxOf(half, (s) => s.fromSpool),
      fromSpoolEver: maxOf(samples, (s) => s.fromSpool),
      pendingMax: maxOf(samples, (s) => s.waiting),
      series: samples.map((s) => s.total),
      pollErrors,
    };
    const allowedSlope = Math.max(1, KEEP_UP_GROWTH_PER_SESSION * o.sessions);
    const why: string[] = [];
    if (tail.length === 0) {
      why.push('no backlog sample in the last seconds');
    }
    if (backlog.maxQueuedTail > allowedTail) {
      why.push(
        `${backlog.maxQueuedTail} > ${allowedTail} frames waiting for the encoders in the last ` +
          `${KEEP_UP_TAIL_S} s`,
      );
    }
    if (backlog.slopeSecondHalf > allowedSlope) {
      why.push(
        `backlog grows by ${backlog.slopeSecondHalf} frames/s in the second half ` +
          `(allowed ${round(allowedSlope, 2)})`,
      );
    }
    if (backlog.fromSpoolSecondHalf > 0) {
      why.push(`${backlog.fromSpoolSecondHalf} recorders reading the spool in the second half`);
    }
    if (backlog.pendingMax > 0) {
      why.push(`${backlog.pendingMax} recorders pending (waiting for an encoder slot)`);
    }
    if ((statuses.ready ?? 0) !== o.sessions) {
      why.push(`recordings at close: ${JSON.stringify(statuses)}`);
    }
    const maxAckLagSecondHalf = maxOf(half, (s) => s.ackLag);
    if (o.maxAckLagFrames !== undefined && maxAckLagSecondHalf > o.maxAckLagFrames) {
      why.push(
        `a session had ${maxAckLagSecondHalf} frames unacknowledged in the second half ` +
          `(allowed ${o.maxAckLagFrames})`,
      );
    }
    if (Object.keys(earlyCloses).length > 0) {
      why.push(`connections lost while streaming: ${JSON.stringify(earlyCloses)}`);
    }
    return {
      sessions: o.sessions,
      seconds: o.seconds,
      sessionIds: ids,
      keptUp: why.length === 0,
      why,
      sentFrames,
      sentFps: round(sentFrames / sendSeconds, 1),
      perSessionFps: round(sentFrames / sendSeconds / o.sessions, 2),
      backlog,
      client: {
        flows,
        keyframes,
        errors,
        earlyCloses,
        maxAckLag,
        maxAckLagSecondHalf,
        ackLagLimit: o.maxAckLagFrames ?? null,
        ackLagSeries: samples.map((s) => s.ackLag),
        ackMs: percentiles(ackMs),
        ackMsSecondHalf: percentiles(ackMsSecondHalf),
      },
      close: { statuses, ms: percentiles(closeMs) },
    };
  } finally {
    for (const timer of timers) {
      clearTimeout(timer);
    }
    for (const client of clients) {
      client?.ws.terminate();
    }
  }
}

/** Waits until none of the service's recorders is left and no encoder slot is held. */
export async function settle(baseUrl: string, adminToken: string): Promise<boolean> {
  const deadline = performance.now() + SETTLE_TIMEOUT_MS;
  while (performance.now() < deadline) {
    try {
      const status = await recordingStatus(baseUrl, adminToken);
      if (status.recorders.length === 0 && status.encoders.active === 0) {
        return true;
      }
    } catch {
      // The service may be busy finishing; ask again.
    }
    await sleep(250);
  }
  return false;
}

export interface CloseLatencyOptions {
  baseUrl: string;
  token: string;
  adminToken: string;
  pool: FramePool;
  frames: number;
  sendFps: number;
}

export interface CloseLatencyResult {
  sessionId: string;
  /** `close` sent to `closed` received. */
  closeMs: number;
  status: ClosedRecording['status'];
  durationMs: number | null;
  frames: number;
  /** Frames the recorder had not yet given to ffmpeg when `close` was sent. */
  backlogAtClose: number | null;
  flows: number;
}

/**
 * One session of `frames` frames with pts i × 100 ms (10 fps of capture time), sent at `sendFps`;
 * once every frame is acknowledged (durable), `close` is sent and the time to `closed` taken.
 */
export async function closeLatencySession(o: CloseLatencyOptions): Promise<CloseLatencyResult> {
  const client = await StreamClient.connect(o.baseUrl, { token: o.token });
  try {
    const { sessionId } = await client.open(OPEN_BODY);
    const start = performance.now();
    for (let i = 1; i <= o.frames; i++) {
      const wait = start + ((i - 1) * 1000) / o.sendFps - performance.now();
      if (wait >= 1) {
        await sleep(wait);
      }
      client.ws.send(o.pool.frame(i - 1, i, (i - 1) * FRAME_INTERVAL_MS));
    }
    await client.acksUntil(o.frames, 30_000);
    const flows = client.messages.filter((m) => m.type === 'flow').length;
    const { backlogAtClose, closed, closeMs } = await closeTimed(
      client,
      sessionId,
      o.baseUrl,
      o.adminToken,
    );
    return {
      sessionId,
      closeMs,
      status: closed.recording.status,
      durationMs: closed.recording.durationMs,
      frames: closed.frames,
      backlogAtClose,
      flows,
    };
  } finally {
    client.ws.terminate();
  }
}

/**
 * Sends `close` and times it to `closed` (read off the socket as it arrives, not when a waiter
 * gets to it), with the recorder's backlog just before; then waits for the socket to close.
 */
export async function closeTimed(
  client: StreamClient,
  sessionId: string,
  baseUrl: string,
  adminToken: string,
  timeoutMs = CLOSE_TIMEOUT_MS,
): Promise<{ backlogAtClose: number | null; closed: Closed; closeMs: number }> {
  let backlogAtClose: number | null = null;
  try {
    const status = await recordingStatus(baseUrl, adminToken);
    backlogAtClose = status.recorders.find((r) => r.sessionId === sessionId)?.backlogFrames ?? null;
  } catch {
    // Reported as unknown.
  }
  let closedAt = 0;
  client.ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary && closedAt === 0 && data.includes('"type":"closed"')) {
      closedAt = performance.now();
    }
  });
  const sent = performance.now();
  client.send({ type: 'close' });
  const closed = await client.next('closed', timeoutMs);
  const closeMs = round((closedAt || performance.now()) - sent, 1);
  await Promise.race([client.closed, sleep(5_000)]);
  return { backlogAtClose, closed, closeMs };
}

/** Least-squares slope of y over x; 0 with fewer than two points. */
export function slope(points: Array<[number, number]>): number {
  if (points.length < 2) {
    return 0;
  }
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
