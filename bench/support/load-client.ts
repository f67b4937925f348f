import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { encodeMediaMessage, Track } from '../../src/protocol/media-header';

/**
 * The load generator of bench:ingest, the same for framegate and for the raw baseline: N
 * connections that each send `open`, wait for `opened`, then stream media messages while at most
 * `window` of them are unacknowledged, and time each `ack` from the send of the frame it names.
 */

const SUBPROTOCOL = 'framegate.v1';
const HANDSHAKE_TIMEOUT_MS = 30_000;
const OPENED_TIMEOUT_MS = 30_000;
/** The frame rate every connection declares in `open`. */
const DECLARED_FPS = 30;

/** Where and how to connect: the URL and the handshake headers of connection `i`. */
export interface Endpoint {
  /** ws://127.0.0.1:<port>/v1/stream */
  url: string;
  headersFor(i: number): Record<string, string>;
}

export interface ClientOptions {
  /**
   * Mask every client frame with a zero key instead of a random one: `ws` then skips masking on
   * the client and unmasking on the server. Off by default: browsers mask with random keys, and
   * unmasking is part of the server's real cost.
   */
  zeroMask: boolean;
  /** Handshakes in progress at once while connecting. */
  connectConcurrency: number;
}

/** Counters of anything that is not a plain `ack`: flow, error, unexpected closes. */
export interface Problems {
  flow: number;
  /** `flow` messages by reason (capacity, quota, encoder_backlog, recovered...). */
  flowReasons: Record<string, number>;
  /** `error` messages by code. */
  errors: Record<string, number>;
  /** Closes other than the 1000 that follows our `close`, by code. */
  closes: Record<string, number>;
}

/** A connection that has sent `open` and received `opened`. */
export class BenchConnection {
  seq = 0;
  acked = 0;
  /** The server answered our `close` with `closed`. */
  closedNormally = false;
  /** Resolves with the close code. */
  readonly closed: Promise<number>;
  /** Called for each ack that moves `acked` forward, after it moved. */
  onAck: ((conn: BenchConnection, previous: number) => void) | null = null;
  /** The frame rate the server allows now (`opened.limits`, then `flow`); null when unlimited. */
  maxFps: number | null = null;
  /** The lowest `maxFps` the server ever gave this connection below the rate it declared. */
  lowestCap: number | null = null;
  private readonly sendTimes: Float64Array;
  private readonly ringMask: number;

  constructor(
    readonly ws: WebSocket,
    readonly problems: Problems,
    ring: number,
  ) {
    this.ringMask = ring - 1;
    this.sendTimes = new Float64Array(ring);
    this.closed = new Promise((resolve) => ws.once('close', (code: number) => resolve(code)));
  }

  /** Sends the next frame; `pts` in ms since the stream started. */
  sendFrame(payload: Buffer, pts: number): void {
    const seq = ++this.seq;
    const message = encodeMediaMessage(Track.Video, seq, pts >>> 0, payload);
    this.sendTimes[seq & this.ringMask] = performance.now();
    this.ws.send(message);
  }

  setMaxFps(fps: number): void {
    this.maxFps = fps;
    if (fps < DECLARED_FPS) {
      this.lowestCap = Math.min(this.lowestCap ?? fps, fps);
    }
  }

  /** When the frame `seq` was sent (it must still be within the ring: unacked or just acked). */
  sentAt(seq: number): number {
    return this.sendTimes[seq & this.ringMask];
  }

  handleText(text: string): void {
    let m: { type?: string; seq?: number; code?: string };
    try {
      m = JSON.parse(text) as typeof m;
    } catch {
      this.problems.errors.invalid_json = (this.problems.errors.invalid_json ?? 0) + 1;
      return;
    }
    if (m.type === 'ack') {
      if (typeof m.seq === 'number' && m.seq > this.acked) {
        const previous = this.acked;
        this.acked = m.seq;
        this.onAck?.(this, previous);
      }
    } else if (m.type === 'flow') {
      this.problems.flow++;
      const flow = m as { reason?: string; maxFps?: number };
      const reason = flow.reason ?? 'unknown';
      this.problems.flowReasons[reason] = (this.problems.flowReasons[reason] ?? 0) + 1;
      if (typeof flow.maxFps === 'number') {
        this.setMaxFps(flow.maxFps);
      }
    } else if (m.type === 'error') {
      const code = m.code ?? 'unknown';
      this.problems.errors[code] = (this.problems.errors[code] ?? 0) + 1;
    } else if (m.type === 'closed') {
      this.closedNormally = true;
    }
  }
}

/** Opens `count` connections, each with its `open` answered; throws (closing them all) if any fails. */
export async function connectAll(
  endpoint: Endpoint,
  count: number,
  window: number,
  client: ClientOptions,
  problems: Problems,
  firstIndex = 0,
  /** Count connections the server refuses for capacity (1013 / 503) instead of failing. */
  refused?: { count: number },
): Promise<BenchConnection[]> {
  const ring = 2 ** Math.ceil(Math.log2(window * 2 + 2));
  const conns: BenchConnection[] = [];
  const failures = new Map<string, number>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = firstIndex + next++;
      try {
        conns.push(await connectOne(endpoint, i, ring, client, problems));
      } catch (err) {
        const key = err instanceof Error ? err.message : String(err);
        if (refused && /^(closed with 1013 |HTTP 503 )/.test(key)) {
          refused.count++;
        } else {
          failures.set(key, (failures.get(key) ?? 0) + 1);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(count, client.connectConcurrency) }, worker));
  if (failures.size > 0) {
    for (const c of conns) {
      c.ws.terminate();
    }
    const summary = [...failures].map(([why, n]) => `${n}× ${why}`).join('; ');
    throw new Error(`${count - conns.length} of ${count} connections failed: ${summary}`);
  }
  return conns;
}

function connectOne(
  endpoint: Endpoint,
  i: number,
  ring: number,
  client: ClientOptions,
  problems: Problems,
): Promise<BenchConnection> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(endpoint.url, [SUBPROTOCOL], {
      headers: endpoint.headersFor(i),
      perMessageDeflate: false,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      ...(client.zeroMask ? { generateMask: (mask: Buffer) => void mask.fill(0) } : {}),
    });
    const conn = new BenchConnection(ws, problems, ring);
    let settled = false;
    const fail = (why: string): void => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        reject(new Error(why));
      }
    };
    const timer = setTimeout(() => fail('no opened in time'), OPENED_TIMEOUT_MS);
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => fail(`HTTP ${res.statusCode} ${body.slice(0, 200)}`));
    });
    ws.on('error', (err) => fail(err.message));
    ws.once('close', (code: number) => {
      if (settled) {
        if (!conn.closedNormally) {
          problems.closes[code] = (problems.closes[code] ?? 0) + 1;
        }
      } else {
        fail(`closed with ${code} before opened`);
      }
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        return;
      }
      const text = data.toString('utf8');
      if (!settled) {
        if (text.startsWith('{"type":"opened"')) {
          settled = true;
          clearTimeout(timer);
          const opened = JSON.parse(text) as { limits?: { maxFps?: number } };
          if (typeof opened.limits?.maxFps === 'number') {
            conn.setMaxFps(opened.limits.maxFps);
          }
          resolve(conn);
        } else {
          fail(`answered open with ${text.slice(0, 200)}`);
        }
        return;
      }
      conn.handleText(text);
    });
    ws.once('open', () => {
      ws.send(
        JSON.stringify({
          type: 'open',
          params: { bench: 'ingest', connection: i },
          video: { width: 640, height: 480, fps: DECLARED_FPS },
        }),
      );
    });
  });
}

/**
 * Ends every connection: `close`, then the server's `closed` and close frame (framegate sends
 * `closed` once the session's recording is finalized, so this waits for the encoder to catch up);
 * connections that do not finish within `timeoutMs` are cut off. Returns how many ended normally
 * and how long the last one took.
 */
export async function closeAll(
  conns: BenchConnection[],
  timeoutMs: number,
): Promise<{ closedNormally: number; seconds: number }> {
  const started = performance.now();
  for (const c of conns) {
    if (c.ws.readyState === WebSocket.OPEN) {
      c.ws.send('{"type":"close"}');
    }
  }
  const timer = setTimeout(() => {
    for (const c of conns) {
      c.ws.terminate();
    }
  }, timeoutMs);
  await Promise.all(conns.map((c) => c.closed));
  clearTimeout(timer);
  return {
    closedNormally: conns.filter((c) => c.closedNormally).length,
    seconds: (performance.now() - started) / 1000,
  };
}

export function newProblems(): Problems {
  return { flow: 0, flowReasons: {}, errors: {}, closes: {} };
}

export interface StreamRunOptions {
  endpoint: Endpoint;
  client: ClientOptions;
  connections: number;
  /** Unacknowledged frames allowed in flight per connection. */
  window: number;
  /** JPEG payload of every frame. */
  payload: Buffer;
  warmupMs: number;
  measureMs: number;
  /** Frames per second per connection; omitted: as fast as the window allows. */
  fps?: number;
  /** After the run, how long the server may take to answer every `close` before we cut off. */
  closeTimeoutMs: number;
  /** Called when the measurement window opens and closes (to sample the server's CPU time). */
  onWindow?(edge: 'start' | 'end'): void | Promise<void>;
  /**
   * Connections the server refuses for capacity are counted, not a failure; paced connections
   * keep to the `maxFps` the server gives them (`opened.limits`, `flow`), as a client must.
   */
  admission?: boolean;
}

export interface LatencySummary {
  samples: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface StreamRunResult {
  connections: number;
  fps: number | null;
  measuredSeconds: number;
  /** Frames whose ack arrived within the measurement window. */
  ackedFrames: number;
  framesPerSec: number;
  /** Acked media-message bytes (header + JPEG) per second, in 10^6 bytes. */
  mbPerSec: number;
  /** From the send of the frame an ack names to the ack's arrival, acks within the window. */
  ackLatencyMs: LatencySummary;
  /** The same during the warm-up: every connection starting at once (the connect burst). */
  warmupAckLatencyMs: LatencySummary;
  /** CPU of the load generator, in % of one core, over the window. */
  clientCpuPct: number;
  /** Frames the window held back in paced mode (the server acked too slowly). */
  windowStalls: number;
  sessionsClosedNormally: number;
  /** Connections refused for capacity (only with `admission`). */
  refused: number;
  /** Connections capped below the rate they declared at some point, and the lowest cap. */
  throttled: number;
  lowestCapFps: number | null;
  /** From sending `close` on every connection to the last one ending. */
  closeSeconds: number;
  problems: Problems;
}

/** Connects, streams for warm-up + measurement, closes; everything ends by itself. */
export async function streamRun(o: StreamRunOptions): Promise<StreamRunResult> {
  const problems = newProblems();
  const refused = { count: 0 };
  const conns = await connectAll(
    o.endpoint,
    o.connections,
    o.window,
    o.client,
    problems,
    0,
    o.admission ? refused : undefined,
  );
  const messageBytes = o.payload.length + 12;
  const latencies: number[] = [];
  const warmupLatencies: number[] = [];
  let ackedFrames = 0;
  let warmingUp = true;
  let measuring = false;
  let running = true;
  let windowStalls = 0;
  const t0 = performance.now();
  const pts = (): number => Math.round(performance.now() - t0);

  const pump = (c: BenchConnection): void => {
    while (running && c.seq - c.acked < o.window) {
      c.sendFrame(o.payload, pts());
    }
  };
  const onAck = (c: BenchConnection, previous: number): void => {
    if (measuring) {
      ackedFrames += c.acked - previous;
      latencies.push(performance.now() - c.sentAt(c.acked));
    } else if (warmingUp) {
      warmupLatencies.push(performance.now() - c.sentAt(c.acked));
    }
    if (o.fps === undefined) {
      pump(c);
    }
  };

  const timers: NodeJS.Timeout[] = [];
  for (const c of conns) {
    c.onAck = onAck;
    if (o.fps === undefined) {
      pump(c);
    } else {
      const pacedFps = o.fps;
      const every = 1000 / pacedFps;
      let lastSentAt = 0;
      // Spread the connections over one frame interval, as independent cameras would be.
      const phase = setTimeout(() => {
        timers.push(
          setInterval(() => {
            if (!running) {
              return;
            }
            // Under a cap, a frame only once 1/maxFps has passed (5 % slack for timer jitter).
            const now = performance.now();
            if (
              o.admission &&
              c.maxFps !== null &&
              c.maxFps < pacedFps &&
              now - lastSentAt < 1000 / (c.maxFps * 0.95)
            ) {
              return;
            }
            if (c.seq - c.acked >= o.window) {
              windowStalls++;
              return;
            }
            lastSentAt = now;
            c.sendFrame(o.payload, pts());
          }, every),
        );
      }, Math.random() * every);
      timers.push(phase);
    }
  }

  await sleep(o.warmupMs);
  warmingUp = false;
  await o.onWindow?.('start');
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  measuring = true;
  await sleep(o.measureMs);
  measuring = false;
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await o.onWindow?.('end');
  running = false;
  for (const t of timers) {
    clearTimeout(t);
    clearInterval(t);
  }
  const closed = await closeAll(conns, o.closeTimeoutMs);

  return {
    connections: o.connections,
    fps: o.fps ?? null,
    measuredSeconds: round(seconds, 3),
    ackedFrames,
    framesPerSec: round(ackedFrames / seconds, 1),
    mbPerSec: round((ackedFrames * messageBytes) / seconds / 1e6, 2),
    ackLatencyMs: summarize(latencies),
    warmupAckLatencyMs: summarize(warmupLatencies),
    clientCpuPct: round(((cpu.user + cpu.system) / 1000 / (seconds * 1000)) * 100, 1),
    windowStalls,
    sessionsClosedNormally: closed.closedNormally,
    refused: refused.count,
    throttled: conns.filter((c) => c.lowestCap !== null).length,
    lowestCapFps: conns.reduce<number | null>(
      (low, c) => (c.lowestCap === null ? low : Math.min(low ?? c.lowestCap, c.lowestCap)),
      null,
    ),
    closeSeconds: round(closed.seconds, 2),
    problems,
  };
}

export function summarize(values: number[]): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  const at = (p: number): number =>
    sorted.length === 0
      ? NaN
      : round(sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)], 1);
  return {
    samples: sorted.length,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: sorted.length === 0 ? NaN : round(sorted[sorted.length - 1], 1),
  };
}

export function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
