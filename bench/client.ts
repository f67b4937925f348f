/**
 * bench:client: the Node SDK (`@framegate/client`, as built) against a bare `ws` sender of the same
 * frames, on the same framegate server, in the same run, alternating rounds so that both see the
 * same machine. Both keep at most the same unacknowledged data in flight and keep to the `maxFps`
 * the server gives them, as a client must; the SDK adds its outbox, pacing and bookkeeping. Then
 * the SDK's memory while 10 s of frames are unacknowledged (the link frozen by a TCP proxy).
 * Progress goes to stderr, one JSON object to stdout.
 *
 * Env (all optional):
 * - BENCH_SECONDS (8): per round; BENCH_ROUNDS (2): rounds per sender;
 * - BENCH_WINDOW (100): unacknowledged frames in flight (the SDK: the same bytes as its cap);
 * - BENCH_FRAME_BYTES (25000): the size the generated 640x480 JPEG aims at;
 * - BENCH_HELD_FPS (30): the capture rate of the 10 s held unacknowledged in the memory scenario.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { Pool } from 'pg';
import type * as Sdk from '../client/src/node';
import { runMigrations } from '../src/database/migrate';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import type { ServerMessage } from '../src/protocol/messages';
import { SUBPROTOCOL } from '../src/protocol/subprotocol';
import { testDir } from '../test/support/dirs';
import { PgProcess } from '../test/support/pg-process';
import { TcpProxy } from '../test/support/tcp-proxy';
import { hsToken } from '../test/support/tokens';
import { BenchChild } from './support/child';
import { benchJpeg } from './support/jpeg';
import { Cleanup, cpuModel, describe, progressFor, sourceState } from './support/run-info';

// The SDK ships as ESM; the bench runs it as built (`npm run bench:client` builds it first), and
// Node 20.19 requires ESM from CommonJS.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const sdk = require('../client/dist/client/src/node.js') as typeof Sdk;

const ROOT = resolve(__dirname, '..');
const CHANNEL = 'bench-client';
const progress = progressFor('client');

const settings = {
  seconds: Number(process.env.BENCH_SECONDS ?? 8),
  rounds: Number(process.env.BENCH_ROUNDS ?? 2),
  window: Number(process.env.BENCH_WINDOW ?? 100),
  frameBytes: Number(process.env.BENCH_FRAME_BYTES ?? 25_000),
  heldFps: Number(process.env.BENCH_HELD_FPS ?? 30),
};

const OPEN = { params: { bench: 'client' }, video: { width: 640, height: 480, fps: 30 } };

interface Rate {
  ackedFrames: number;
  seconds: number;
  fps: number;
  /** `flow` messages by reason: when any came, the server's cap, not the sender, set the pace. */
  flows: Record<string, number>;
  /** CPU time of this process (the sender) per acknowledged frame. */
  cpuUsPerFrame: number;
}

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function countFlow(flows: Record<string, number>, reason: string): void {
  flows[reason] = (flows[reason] ?? 0) + 1;
}

/**
 * The bare sender: one `ws` connection, `open`, then media messages built with the protocol's
 * codec while fewer than `window` are unacknowledged and the allowed rate permits.
 */
async function bareRound(url: string, token: string, jpeg: Buffer): Promise<Rate> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/stream`, SUBPROTOCOL, {
    headers: { authorization: `Bearer ${token}` },
    perMessageDeflate: false,
  });
  let acked = 0;
  let sent = 0;
  const flows: Record<string, number> = {};
  let intervalMs = 0;
  let nextSlotAt = 0;
  let wake: (() => void) | null = null;
  const opened = new Promise<void>((resolveOpened, reject) => {
    ws.on('error', reject);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'open', ...OPEN })));
    ws.on('message', (data: Buffer, isBinary) => {
      if (isBinary) {
        return;
      }
      const m = JSON.parse(data.toString()) as ServerMessage;
      if (m.type === 'opened') {
        intervalMs = 1000 / m.limits.maxFps;
        resolveOpened();
      } else if (m.type === 'ack') {
        acked = m.seq;
        wake?.();
      } else if (m.type === 'flow') {
        countFlow(flows, m.reason);
        intervalMs = m.maxFps > 0 ? 1000 / m.maxFps : 1000;
      }
    });
  });
  await opened;
  const cpuAtStart = cpuUs();
  const startedAt = performance.now();
  const stopAt = startedAt + settings.seconds * 1000;
  while (performance.now() < stopAt) {
    const now = performance.now();
    if (sent - acked >= settings.window) {
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
      wake = null;
      continue;
    }
    if (now < nextSlotAt) {
      await new Promise((r) => setTimeout(r, nextSlotAt - now));
      continue;
    }
    nextSlotAt = Math.max(now, nextSlotAt) + intervalMs;
    sent++;
    ws.send(encodeMediaMessage(Track.Video, sent, Math.round((sent * 1000) / 30), jpeg));
    if (sent % 16 === 0) {
      // Lets acks in between sends that the window does not hold back.
      await new Promise((r) => setImmediate(r));
    }
  }
  const ackedAtStop = acked;
  const seconds = (performance.now() - startedAt) / 1000;
  const cpuUsPerFrame = (cpuUs() - cpuAtStart) / ackedAtStop;
  ws.terminate();
  return { ackedFrames: ackedAtStop, seconds, fps: ackedAtStop / seconds, flows, cpuUsPerFrame };
}

/** The SDK sender: `send()` in a loop, its byte cap equal to the bare sender's window. */
async function sdkRound(url: string, token: string, jpeg: Buffer): Promise<Rate> {
  const client = sdk.createNodeClient({
    url,
    token,
    maxUnackedBytes: settings.window * (jpeg.length + 12),
  });
  const flows: Record<string, number> = {};
  client.on('flow', (f) => countFlow(flows, f.reason));
  await client.open(OPEN);
  const cpuAtStart = cpuUs();
  const startedAt = performance.now();
  const stopAt = startedAt + settings.seconds * 1000;
  let n = 0;
  while (performance.now() < stopAt) {
    n++;
    await client.send(jpeg, Track.Video, Math.round((n * 1000) / 30));
  }
  const acked = client.stats().ackedSeq;
  const seconds = (performance.now() - startedAt) / 1000;
  const cpuUsPerFrame = (cpuUs() - cpuAtStart) / acked;
  await client.stop();
  return { ackedFrames: acked, seconds, fps: acked / seconds, flows, cpuUsPerFrame };
}

/** The SDK's memory with `heldFps` × 10 s frames taken and none acknowledged. */
async function heldMemory(url: string, token: string, jpeg: Buffer) {
  const proxy = await TcpProxy.start(url);
  const client = sdk.createNodeClient({ url: proxy.url, token });
  try {
    await client.open(OPEN);
    proxy.freeze();
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) {
      throw new Error('run with node --expose-gc (npm run bench:client does)');
    }
    // Distinct buffers, as a camera gives: the app lets go of each once the SDK took it.
    const frames = settings.heldFps * 10;
    await settle(gc);
    const before = process.memoryUsage();
    for (let n = 1; n <= frames; n++) {
      // Paced by the rate the server allows, as captured frames would be.
      await client.send(Buffer.from(jpeg), Track.Video, Math.round((n * 1000) / settings.heldFps));
    }
    await settle(gc);
    const after = process.memoryUsage();
    const stats = client.stats();
    const payloadBytes = frames * jpeg.length;
    const usedBytes = after.heapUsed - before.heapUsed + (after.arrayBuffers - before.arrayBuffers);
    return {
      framesHeld: stats.outboxDepth,
      ackedSeq: stats.ackedSeq,
      payloadMB: round(payloadBytes / 1e6),
      unackedMB: round(stats.unackedBytes / 1e6),
      heapUsedDeltaMB: round((after.heapUsed - before.heapUsed) / 1e6),
      arrayBuffersDeltaMB: round((after.arrayBuffers - before.arrayBuffers) / 1e6),
      rssDeltaMB: round((after.rss - before.rss) / 1e6),
      /** Memory held per byte of unacknowledged frame (1 = the frames themselves, no more). */
      bytesPerPayloadByte: round(usedBytes / payloadBytes),
    };
  } finally {
    await client.stop();
    await proxy.close();
  }
}

/** Full collections with a pause between, so that freed external memory is accounted. */
async function settle(gc: () => void): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 100));
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

async function main(): Promise<void> {
  const cleanup = new Cleanup(progress);
  const stop = () => void cleanup.run().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  try {
    const root = testDir('bench-client');
    cleanup.add('temp dir', () => rmSync(root, { recursive: true, force: true }));
    const jpeg = await benchJpeg(settings.frameBytes);
    progress(`frame: 640x480 JPEG of ${jpeg.length} bytes (+12 header)`);
    const secret = randomBytes(32).toString('hex');
    progress('starting Postgres');
    const pg = new PgProcess(join(root, 'postgres'), 0);
    cleanup.add('postgres', () => pg.stop());
    const databaseUrl = await pg.start();
    await runMigrations({ url: databaseUrl, poolMax: 2, nodeId: 'bench' });
    const pool = new Pool({ connectionString: databaseUrl, max: 1 });
    // Neither sender may be held back by the channel quota: the bench compares the senders.
    await pool.query(
      `INSERT INTO channel_quotas (channel, max_connections, handshakes_per_min, max_fps, max_kbps)
       VALUES ($1, 1000, 100000, 1000000, 2000000000)`,
      [CHANNEL],
    );
    await pool.end();

    const { child, match } = await BenchChild.start({
      name: 'framegate',
      script: join(ROOT, 'src/main.ts'),
      cwd: root,
      minOpenFiles: 1_000,
      env: {
        PATH: process.env.PATH,
        TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'),
        NODE_ENV: 'production',
        NODE_ID: 'bench-client',
        HOST: '127.0.0.1',
        PORT: '0',
        LOG_LEVEL: 'info',
        DATA_DIR: join(root, 'data'),
        DATABASE_URL: databaseUrl,
        AUTH_JWT_SECRET: secret,
        RECORDING_CAPACITY_FPS: '1000000',
      },
      ready: /"url":"([^"]+)"[^\n]*"msg":"framegate listening"/,
      readyTimeoutMs: 120_000,
    });
    cleanup.add('framegate', () => child.stop(30_000));
    const url = match[1];
    progress(`framegate listening at ${url} (pid ${child.pid})`);

    let i = 0;
    const token = () => hsToken({ sub: `bench-${i++}`, channel: CHANNEL, secret });
    const bare: Rate[] = [];
    const sdkRates: Rate[] = [];
    for (let pass = 1; pass <= settings.rounds; pass++) {
      // Alternating, and in a different order each round, so that neither always goes first.
      const order = pass % 2 ? ['sdk', 'bare'] : ['bare', 'sdk'];
      for (const side of order) {
        const rate =
          side === 'sdk' ? await sdkRound(url, token(), jpeg) : await bareRound(url, token(), jpeg);
        (side === 'sdk' ? sdkRates : bare).push(rate);
        progress(
          `round ${pass} ${side}: ${round(rate.fps)} acked frames/s, ` +
            `${round(rate.cpuUsPerFrame)} µs CPU/frame, flow ${JSON.stringify(rate.flows)}`,
        );
      }
    }
    // Last: its frozen session would still be recording while a later round ran.
    progress('memory with 10 s of frames unacknowledged');
    const held = await heldMemory(url, token(), jpeg);
    const sdkFps = median(sdkRates.map((r) => r.fps));
    const bareFps = median(bare.map((r) => r.fps));
    process.stdout.write(
      `${JSON.stringify({
        bench: 'client',
        source: sourceState(),
        machine: { cpu: cpuModel(), node: process.version },
        settings,
        frameBytes: jpeg.length,
        ackedFps: {
          sdk: round(sdkFps),
          bare: round(bareFps),
          ratio: round(sdkFps / bareFps),
          aim: 0.8,
          rounds: { sdk: sdkRates.map((r) => round(r.fps)), bare: bare.map((r) => round(r.fps)) },
          cpuUsPerFrame: {
            sdk: round(median(sdkRates.map((r) => r.cpuUsPerFrame))),
            bare: round(median(bare.map((r) => r.cpuUsPerFrame))),
          },
          flows: { sdk: sdkRates.map((r) => r.flows), bare: bare.map((r) => r.flows) },
        },
        heldUnacknowledged: { seconds: 10, fps: settings.heldFps, ...held },
      })}\n`,
    );
  } catch (err) {
    progress(`failed: ${describe(err)}`);
    process.exitCode = 1;
  } finally {
    await cleanup.run();
  }
}

void main();
