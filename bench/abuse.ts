/**
 * bench:abuse: every attack of issue 10 at once against one framegate node for BENCH_SECONDS (60),
 * beside BENCH_CANARIES (10) canary sessions streaming real JPEGs at 10 fps. It prints, as one JSON
 * object on stdout, the canaries' ack latency (p50/p99/max, aim p99 ≤ 250 ms) next to the same
 * canaries' figures alone (the baseline, measured first in the same run), the node's peak RSS and
 * fds, its quota counters, and, once the attacks stopped and the node settled,
 * `framegate_sessions_live` and the connection slots against the real state (the database's open
 * sessions, the node's open spool and recording files): the aim is 0 leaked slots, sessions, fds.
 *
 * Each client gets its own address through X-Forwarded-For (the node trusts loopback as a proxy),
 * so the per-IP limits see a crowd of attackers, not one, and the canaries are not limited by the
 * attackers' address.
 *
 * Attacks (each a loop until the end):
 * - drop before `opened`: `open` then the socket dropped 0–9 ms later, or a binary frame at once;
 * - malformed upgrades with a valid token: bad Sec-WebSocket-Key, wrong version, no Upgrade
 *   header, and sockets closed during the auth check;
 * - 16 MB unauthenticated fallback bodies, 20 at a time;
 * - costly images: 4 sessions sending 6000×6000 PNGs at 15 fps, ignoring `flow`;
 * - bad-token floods over REST and WebSocket (audit amplification);
 * - deeply nested JSON over REST and WebSocket;
 * - overload: BENCH_OVERLOAD_SESSIONS (40) sessions of 640×480 JPEGs at 30 fps that honour `flow`,
 *   and 3 that ignore it.
 *
 * Env: BENCH_SECONDS (60), BENCH_CANARIES (10), BENCH_BASELINE_SECONDS (10),
 * BENCH_OVERLOAD_SESSIONS (40), BENCH_SETTLE_SECONDS (90).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { Pool } from 'pg';
import sharp from 'sharp';
import WebSocket from 'ws';
import { runMigrations } from '../src/database/migrate';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { Canary, longestAckGapMs } from '../test/support/canary';
import { testDir } from '../test/support/dirs';
import { PgProcess } from '../test/support/pg-process';
import { hsToken, TEST_SECRET } from '../test/support/tokens';
import { BenchChild } from './support/child';
import { benchJpeg } from './support/jpeg';
import { Cleanup, describe, progressFor, sourceState } from './support/run-info';

const ROOT = resolve(__dirname, '..');
const progress = progressFor('abuse');

function num(name: string, fallback: number): number {
  const v = process.env[name];
  const n = v === undefined || v === '' ? fallback : Number(v);
  if (!Number.isFinite(n) || n < 0) {
    throw new Error(`${name} must be a non-negative number`);
  }
  return n;
}

const settings = {
  seconds: num('BENCH_SECONDS', 60),
  canaries: num('BENCH_CANARIES', 10),
  baselineSeconds: num('BENCH_BASELINE_SECONDS', 10),
  overloadSessions: num('BENCH_OVERLOAD_SESSIONS', 40),
  settleSeconds: num('BENCH_SETTLE_SECONDS', 90),
};

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One client address per attacker or canary, from distinct /16s. */
let nextAddress = 0;
function address(block: number): string {
  const n = nextAddress++;
  return `10.${block}.${(n >> 8) & 255}.${n & 255}`;
}

/** What each attack did: attempts and how the node answered, by outcome. */
class Tally {
  readonly counts: Record<string, Record<string, number>> = {};

  add(attack: string, outcome: string | number): void {
    const a = (this.counts[attack] ??= {});
    a[String(outcome)] = (a[String(outcome)] ?? 0) + 1;
  }
}

interface Target {
  host: string;
  port: number;
  base: string;
  ws: string;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0
    ? 0
    : Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]);
}

function summary(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    frames: sorted.length,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: Math.round(sorted[sorted.length - 1] ?? 0),
  };
}

/** The node's /metrics as name{labels} → value. */
async function metrics(base: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') {
      continue;
    }
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

/**
 * Quantiles (bucket upper bounds, ms) of a server histogram between two scrapes: what the node
 * itself measured in one phase.
 */
function phaseHistogram(
  before: Record<string, number>,
  after: Record<string, number>,
  name: string,
): { count: number; p50Ms: number; p99Ms: number } {
  const buckets = Object.keys(after)
    .filter((k) => k.startsWith(`${name}_bucket{`))
    .map((k) => ({
      le: Number(/le="([^"]+)"/.exec(k)?.[1] ?? NaN),
      n: (after[k] ?? 0) - (before[k] ?? 0),
    }))
    .sort((a, b) => a.le - b.le);
  const count = (after[`${name}_count`] ?? 0) - (before[`${name}_count`] ?? 0);
  const at = (q: number): number => {
    const bucket = buckets.find((b) => b.n >= q * count);
    return bucket && Number.isFinite(bucket.le) ? bucket.le * 1000 : Infinity;
  };
  return { count, p50Ms: at(0.5), p99Ms: at(0.99) };
}

function pick(m: Record<string, number>, prefixes: string[]): Record<string, number> {
  return Object.fromEntries(
    Object.entries(m).filter(([k]) => prefixes.some((p) => k.startsWith(p))),
  );
}

/** The node's open fds: how many, and which are files under its data directory. */
/** The local and remote TCP ports of each socket inode of a process (IPv4 and IPv6). */
function tcpPorts(pid: number): Map<string, { local: number; remote: number }> {
  const ports = new Map<string, { local: number; remote: number }>();
  for (const table of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) {
        continue;
      }
      const port = (address: string) => parseInt(address.split(':')[1] ?? '0', 16);
      ports.set(cols[9], { local: port(cols[1]), remote: port(cols[2]) });
    }
  }
  return ports;
}

/**
 * The process's fds: how many, which are data files, and of what kind. A socket is named by its
 * peer: `postgres` (the database pool), `http` (a client of the service's port, e.g. a kept-alive
 * connection), or `socket` (anything else).
 */
function fdsOf(
  pid: number,
  dataDir: string,
  peers: { postgresPort: number; servicePort: number },
): { total: number; dataFiles: string[]; kinds: Record<string, number> } {
  let total = 0;
  const dataFiles: string[] = [];
  const kinds: Record<string, number> = {};
  const ports = tcpPorts(pid);
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    total++;
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      let kind = /^(socket|pipe|anon_inode):/.exec(target)?.[1] ?? 'file';
      const tcp = kind === 'socket' ? ports.get(/\[(\d+)\]/.exec(target)?.[1] ?? '') : undefined;
      if (tcp?.remote === peers.postgresPort) {
        kind = 'postgres';
      } else if (tcp?.local === peers.servicePort) {
        kind = 'http';
      }
      kinds[kind] = (kinds[kind] ?? 0) + 1;
      if (target.startsWith(dataDir) && !target.includes('/postgres')) {
        dataFiles.push(target.slice(dataDir.length + 1));
      }
    } catch {
      // Closed between the listing and the readlink.
    }
  }
  return { total, dataFiles, kinds };
}

/** Every attacker socket still open; the hard stop terminates them. */
const openSockets = new Set<WebSocket>();
/** Attack loops past the deadline get this long to finish what they do, then are cut off. */
const HARD_STOP_MS = 20_000;
/** A handshake that gets no answer in this long counts as `timeout`. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

function wsClient(t: Target, token: string | null, ip: string): WebSocket {
  const headers: Record<string, string> = { 'x-forwarded-for': ip };
  if (token) {
    headers.authorization = `Bearer ${token}`;
  }
  const ws = new WebSocket(t.ws, ['framegate.v1'], { headers, perMessageDeflate: false });
  ws.on('error', () => undefined);
  openSockets.add(ws);
  ws.once('close', () => openSockets.delete(ws));
  return ws;
}

/** Resolves with the upgrade's HTTP status (101 when accepted, 0 on a socket error, -1 on none). */
function upgraded(ws: WebSocket): Promise<number> {
  return new Promise((done) => {
    const timer = setTimeout(() => {
      done(-1);
      ws.terminate();
    }, HANDSHAKE_TIMEOUT_MS);
    ws.once('close', () => clearTimeout(timer));
    ws.once('open', () => clearTimeout(timer));
    ws.once('open', () => done(101));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      done(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('error', () => done(0));
  });
}

function until(deadline: number): boolean {
  return Date.now() < deadline;
}

/** 1: `open` then drop within 0–9 ms, or a binary frame before `opened`. */
async function dropBeforeOpened(t: Target, deadline: number, tally: Tally): Promise<void> {
  const token = hsToken({ sub: 'dropper', channel: 'attack-drop' });
  let i = 0;
  while (until(deadline)) {
    const ws = wsClient(t, token, address(1));
    const status = await upgraded(ws);
    tally.add('drop_before_opened', status);
    if (status === 101) {
      ws.send(JSON.stringify({ type: 'open', video: { width: 320, height: 240, fps: 10 } }));
      if (i++ % 2 === 0) {
        await sleep(Math.floor(Math.random() * 10));
      } else {
        ws.send(encodeMediaMessage(Track.Video, 1, 0, Buffer.alloc(64)));
      }
      ws.terminate();
    }
    await sleep(50);
  }
}

/** 2: upgrades `ws` must refuse (with a valid token), and sockets closed during the auth check. */
async function malformedUpgrades(t: Target, deadline: number, tally: Tally): Promise<void> {
  const token = hsToken({ sub: 'malformed', channel: 'attack-upgrade' });
  const variants = ['bad_key', 'bad_version', 'no_upgrade', 'close_during_auth'] as const;
  let i = 0;
  while (until(deadline)) {
    const variant = variants[i++ % variants.length];
    const key = variant === 'bad_key' ? 'not-a-key' : randomBytes(16).toString('base64');
    const lines = [
      'GET /v1/stream HTTP/1.1',
      `Host: ${t.host}:${t.port}`,
      ...(variant === 'no_upgrade' ? [] : ['Upgrade: websocket', 'Connection: Upgrade']),
      `Sec-WebSocket-Key: ${key}`,
      `Sec-WebSocket-Version: ${variant === 'bad_version' ? '99' : '13'}`,
      'Sec-WebSocket-Protocol: framegate.v1',
      `Authorization: Bearer ${token}`,
      `X-Forwarded-For: ${address(2)}`,
    ];
    const status = await new Promise<string>((done) => {
      const socket = connect(t.port, t.host, () => {
        socket.write(`${lines.join('\r\n')}\r\n\r\n`);
        if (variant === 'close_during_auth') {
          socket.destroy();
          done('closed');
        }
      });
      let head = '';
      socket.on('data', (d: Buffer) => {
        head += d.toString('latin1');
        const m = /^HTTP\/1\.1 (\d+)/.exec(head);
        if (m) {
          done(m[1]);
          socket.destroy();
        }
      });
      socket.on('error', () => done('error'));
      socket.on('close', () => done('closed'));
      socket.setTimeout(10_000, () => {
        done('timeout');
        socket.destroy();
      });
    });
    tally.add(`malformed_upgrade_${variant}`, status);
    await sleep(25);
  }
}

/** 3: 16 MB fallback bodies with no credentials; resolves with the status and bytes sent. */
function bigBody(t: Target, ip: string): Promise<{ status: number; sentBytes: number }> {
  const size = 16 * 1024 * 1024;
  const chunk = Buffer.alloc(1024 * 1024, 7);
  return new Promise((done) => {
    let sent = 0;
    let finished = false;
    const finish = (status: number) => {
      if (!finished) {
        finished = true;
        done({ status, sentBytes: sent });
      }
    };
    const req = request(
      {
        host: t.host,
        port: t.port,
        method: 'POST',
        path: '/v1/sessions/00000000-0000-4000-8000-000000000000/frames',
        headers: {
          'content-type': 'application/vnd.framegate.frames',
          'content-length': String(size),
          'x-forwarded-for': ip,
        },
      },
      (res) => {
        res.resume();
        finish(res.statusCode ?? 0);
        req.destroy();
      },
    );
    req.on('error', () => finish(0));
    req.setTimeout(60_000, () => req.destroy());
    const pump = () => {
      while (!finished && sent < size) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      if (sent >= size) {
        req.end();
      }
    };
    pump();
  });
}

async function bigBodies(t: Target, deadline: number, tally: Tally): Promise<void> {
  const sentMb: number[] = [];
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (until(deadline)) {
        const r = await bigBody(t, address(3));
        tally.add('unauthenticated_16mb_body', r.status);
        sentMb.push(r.sentBytes / 2 ** 20);
      }
    }),
  );
  const sorted = sentMb.sort((a, b) => a - b);
  tally.counts.unauthenticated_16mb_body.medianMbSentBeforeAnswer = sorted[sorted.length >> 1] ?? 0;
}

/** A session that streams `frame` at `fps` until `deadline`, reconnecting when it is closed. */
async function streamer(
  t: Target,
  o: {
    attack: string;
    token: string;
    frame: Buffer;
    fps: number;
    video: { width: number; height: number; fps: number };
    honourFlow: boolean;
    deadline: number;
    tally: Tally;
    block: number;
  },
): Promise<void> {
  while (until(o.deadline)) {
    const ws = wsClient(t, o.token, address(o.block));
    const status = await upgraded(ws);
    o.tally.add(`${o.attack}_handshake`, status);
    if (status !== 101) {
      await sleep(1000);
      continue;
    }
    let fps = o.fps;
    let opened = false;
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (binary) {
        return;
      }
      const m = JSON.parse(data.toString()) as {
        type: string;
        maxFps?: number;
        reason?: string;
        code?: string;
        limits?: { maxFps: number };
      };
      if (m.type === 'opened') {
        opened = true;
        // A session admitted under a capacity cap learns it here, before any `flow`.
        if (o.honourFlow && m.limits) {
          fps = Math.min(o.fps, m.limits.maxFps);
        }
      } else if (m.type === 'flow') {
        o.tally.add(`${o.attack}_flow`, m.reason ?? '');
        if (o.honourFlow && m.maxFps !== undefined) {
          fps = Math.min(o.fps, Math.max(m.maxFps, 0));
        }
      } else if (m.type === 'error') {
        o.tally.add(`${o.attack}_error`, m.code ?? '');
      }
    });
    const closed = new Promise<number>((done) => ws.once('close', (code) => done(code)));
    ws.send(JSON.stringify({ type: 'open', video: o.video }));
    let seq = 0;
    const started = Date.now();
    let ended = false;
    void closed.then(() => (ended = true));
    while (!ended && until(o.deadline)) {
      if (opened && fps > 0) {
        seq++;
        ws.send(encodeMediaMessage(Track.Video, seq, Date.now() - started, o.frame));
      }
      await sleep(fps > 0 ? 1000 / fps : 200);
    }
    if (!ended) {
      ws.send(JSON.stringify({ type: 'close' }));
      const code = await Promise.race([closed, sleep(HARD_STOP_MS).then(() => -1)]);
      o.tally.add(`${o.attack}_close`, code);
      ws.terminate();
    } else {
      o.tally.add(`${o.attack}_close`, await closed);
    }
    if (!opened) {
      // Refused (over capacity, 1013): a client waits before it tries again.
      await sleep(1000);
    }
  }
}

/** 5: bad bearer tokens over REST and WebSocket, as fast as 8 callers go. */
async function badTokens(t: Target, deadline: number, tally: Tally): Promise<void> {
  await Promise.all([
    ...Array.from({ length: 6 }, async () => {
      while (until(deadline)) {
        const res = await fetch(`${t.base}/v1/sessions/00000000-0000-4000-8000-000000000000`, {
          headers: { authorization: 'Bearer not.a.token', 'x-forwarded-for': address(5) },
        }).catch(() => null);
        await res?.arrayBuffer();
        tally.add('bad_token_rest', res?.status ?? 0);
      }
    }),
    ...Array.from({ length: 2 }, async () => {
      while (until(deadline)) {
        const ws = wsClient(t, 'not.a.token', address(5));
        tally.add('bad_token_ws', await upgraded(ws));
        ws.terminate();
      }
    }),
  ]);
}

/** 6: JSON nested 5 000 deep, over REST (a ticket request) and as a WebSocket text message. */
async function deepJson(t: Target, deadline: number, tally: Tally): Promise<void> {
  const deep = '['.repeat(5000) + ']'.repeat(5000);
  const token = hsToken({ sub: 'deep', channel: 'attack-json' });
  while (until(deadline)) {
    // A route that reads a JSON body: the depth check is what refuses it.
    const res = await fetch(`${t.base}/v1/sessions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'x-forwarded-for': address(6),
      },
      body: `{"video":${deep}}`,
    }).catch(() => null);
    await res?.arrayBuffer();
    tally.add('deep_json_rest', res?.status ?? 0);
    const ws = wsClient(t, token, address(6));
    if ((await upgraded(ws)) === 101) {
      const code = await new Promise<number>((done) => {
        ws.once('close', (c) => done(c));
        ws.send(`{"type":"open","video":${deep}}`);
        setTimeout(() => done(-1), 10_000);
      });
      tally.add('deep_json_ws', code);
      ws.terminate();
    }
    await sleep(200);
  }
}

/** A 6000×6000 PNG that is small on the wire and costly to decode. */
async function hugePng(): Promise<Buffer> {
  return sharp({
    create: { width: 6000, height: 6000, channels: 3, background: { r: 20, g: 90, b: 160 } },
  })
    .composite([
      {
        input: Buffer.from(
          `<svg xmlns="http://www.w3.org/2000/svg" width="6000" height="6000"><circle cx="3000" cy="3000" r="1500" fill="white"/></svg>`,
        ),
      },
    ])
    .png({ compressionLevel: 9 })
    .toBuffer();
}

async function main(): Promise<void> {
  const cleanup = new Cleanup(progress);
  cleanup.stopOnSignals();
  const root = testDir('bench-abuse');
  cleanup.add('temp dir', () => rmSync(root, { recursive: true, force: true }));
  try {
    const png = await hugePng();
    const jpeg = await benchJpeg(25_000);
    progress(`attack PNG 6000x6000: ${png.length} bytes; overload JPEG 640x480: ${jpeg.length}`);

    progress('starting Postgres');
    const pg = new PgProcess(join(root, 'postgres'), 0);
    cleanup.add('postgres', () => pg.stop());
    const databaseUrl = await pg.start();
    await runMigrations({ url: databaseUrl, poolMax: 2, nodeId: 'bench' });

    const dataDir = join(root, 'data');
    const { child, match } = await BenchChild.start({
      name: 'framegate',
      script: join(ROOT, 'src/main.ts'),
      cwd: root,
      minOpenFiles: 4096,
      env: {
        PATH: process.env.PATH,
        TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'),
        NODE_ENV: 'production',
        NODE_ID: 'abuse',
        HOST: '127.0.0.1',
        PORT: '0',
        LOG_LEVEL: 'info',
        DATA_DIR: dataDir,
        DATABASE_URL: databaseUrl,
        AUTH_JWT_SECRET: TEST_SECRET,
        TRUST_PROXY: 'loopback',
        // Sessions the attacks leave interrupted end within the settle time.
        RESUME_WINDOW_MS: '5000',
      },
      ready: /"url":"http:\/\/[^:"]+:(\d+)"[^\n]*"msg":"framegate listening"/,
      readyTimeoutMs: 120_000,
    });
    cleanup.add('framegate', () => child.stop(60_000));
    const port = Number(match[1]);
    const target: Target = {
      host: '127.0.0.1',
      port,
      base: `http://127.0.0.1:${port}`,
      ws: `ws://127.0.0.1:${port}/v1/stream`,
    };
    progress(`framegate listening on ${target.base} (pid ${child.pid})`);
    const db = new Pool({ connectionString: databaseUrl, max: 2 });
    cleanup.add('pool', () => db.end());

    const peers = { postgresPort: Number(new URL(databaseUrl).port), servicePort: port };
    const baseline = { rssBytes: child.rssBytes(), fds: fdsOf(child.pid, dataDir, peers) };

    progress(`${settings.canaries} canaries alone for ${settings.baselineSeconds} s`);
    const canaries = await Promise.all(
      Array.from({ length: settings.canaries }, (_, i) =>
        Canary.start(target.base, {
          token: hsToken({ sub: `canary-${i}`, channel: 'canary' }),
          headers: { 'x-forwarded-for': `192.168.0.${i + 1}` },
        }),
      ),
    );
    const aloneStart = await metrics(target.base);
    await sleep(settings.baselineSeconds * 1000);
    const alone = canaries.map((c) => c.mark());
    const aloneLatencies = canaries.flatMap((c) => c.ackLatencies());
    const ackedAlone = canaries.map((c) => c.ackLatencies().length);
    const attackStart = await metrics(target.base);
    const lagP99Ms: number[] = [];

    progress(`all attacks for ${settings.seconds} s`);
    const tally = new Tally();
    const deadline = Date.now() + settings.seconds * 1000;
    let peakRss = 0;
    let peakFds = 0;
    const peakMetrics: Record<string, number> = {};
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, child.rssBytes());
      try {
        peakFds = Math.max(peakFds, readdirSync(`/proc/${child.pid}/fd`).length);
      } catch {
        // The node is gone; the report says so.
      }
      void metrics(target.base)
        .then((now) => {
          for (const [k, v] of Object.entries(now)) {
            peakMetrics[k] = Math.max(peakMetrics[k] ?? 0, v);
          }
          lagP99Ms.push((now.framegate_event_loop_lag_p99_seconds ?? 0) * 1000);
        })
        .catch(() => undefined);
    }, 500);
    const overloadToken = (i: number) => hsToken({ sub: `load-${i}`, channel: 'load' });
    const attacks = [
      dropBeforeOpened(target, deadline, tally),
      malformedUpgrades(target, deadline, tally),
      bigBodies(target, deadline, tally),
      badTokens(target, deadline, tally),
      deepJson(target, deadline, tally),
      ...Array.from({ length: 4 }, (_, i) =>
        streamer(target, {
          attack: 'costly_images',
          token: hsToken({ sub: `png-${i}`, channel: 'attack-images' }),
          frame: png,
          fps: 15,
          video: { width: 640, height: 480, fps: 15 },
          honourFlow: false,
          deadline,
          tally,
          block: 4,
        }),
      ),
      ...Array.from({ length: settings.overloadSessions + 3 }, (_, i) =>
        streamer(target, {
          attack: i < settings.overloadSessions ? 'overload_honouring' : 'overload_ignoring',
          token: overloadToken(i),
          frame: jpeg,
          fps: 30,
          video: { width: 640, height: 480, fps: 30 },
          honourFlow: i < settings.overloadSessions,
          deadline,
          tally,
          block: 7,
        }),
      ),
    ];
    const settled = Promise.all(
      attacks.map((a) => a.catch((err: unknown) => tally.add('harness_error', describe(err)))),
    );
    const cutOff = await Promise.race([
      settled.then(() => false),
      sleep(settings.seconds * 1000 + HARD_STOP_MS).then(() => true),
    ]);
    if (cutOff) {
      tally.add('harness', `cut off ${openSockets.size} sockets at the hard stop`);
      openSockets.forEach((ws) => ws.terminate());
    }
    clearInterval(sampler);
    const attackEnd = await metrics(target.base);
    const during = canaries.map((c) => c.mark());
    const allLatencies = canaries.flatMap((c) => c.ackLatencies());
    const duringLatencies = canaries.flatMap((c, i) => c.ackLatencies().slice(ackedAlone[i]));

    progress('attacks over; closing the canaries');
    const stops = await Promise.all(
      canaries.map((c) => c.stop().catch((err: unknown) => describe(err))),
    );
    const canaryRecordings = await Promise.all(
      canaries.map(async (c) => {
        for (let i = 0; i < 120; i++) {
          const r = await db.query<{ status: string; frame_count: number }>(
            `SELECT status, frame_count FROM recordings WHERE session_id = $1`,
            [c.sessionId],
          );
          const row = r.rows[0];
          if (row && (row.status === 'ready' || row.status === 'failed')) {
            return { sent: c.sent, status: row.status, frames: row.frame_count };
          }
          await sleep(1000);
        }
        return { sent: c.sent, status: 'not finished', frames: null };
      }),
    );

    progress(`settling (up to ${settings.settleSeconds} s)`);
    const settleDeadline = Date.now() + settings.settleSeconds * 1000;
    let end = await metrics(target.base);
    let realOpen = 0;
    while (Date.now() < settleDeadline) {
      end = await metrics(target.base);
      realOpen = Number(
        (
          await db.query<{ n: string }>(
            `SELECT count(*) AS n FROM sessions WHERE status IN ('open', 'interrupted')`,
          )
        ).rows[0].n,
      );
      const files = fdsOf(child.pid, dataDir, peers).dataFiles.length;
      if (
        (end.framegate_connections ?? 0) === 0 &&
        (end.framegate_sessions_live ?? 0) === 0 &&
        realOpen === 0 &&
        files === 0
      ) {
        break;
      }
      await sleep(1000);
    }
    // Then the pool's connections opened under load close after their idle timeout (pg: 10 s)
    // and kept-alive HTTP connections after the server's keep-alive timeout (5 s): not leaks
    // until they outlive those.
    while (
      Date.now() < settleDeadline &&
      fdsOf(child.pid, dataDir, peers).total > baseline.fds.total
    ) {
      await sleep(1000);
    }
    (globalThis as { gc?: () => void }).gc?.();
    const endFds = fdsOf(child.pid, dataDir, peers);
    const slotsLeft = Object.entries(end)
      .filter(([k]) => k.startsWith('framegate_connection_slots'))
      .reduce((n, [, v]) => n + v, 0);
    const report = {
      bench: 'abuse',
      source: sourceState(),
      settings,
      canaries: {
        alone: {
          ackLatencyMs: summary(aloneLatencies),
          maxAckGapMs: Math.max(...alone.map((p) => p.maxAckGapMs)),
          // The gap free of the send/ack-timer phase (test/support/canary.ts).
          longestAckGapMs: Math.max(...alone.map(longestAckGapMs)),
        },
        underAttack: {
          ackLatencyMs: summary(duringLatencies),
          maxAckGapMs: Math.max(...during.map((p) => p.maxAckGapMs)),
          longestAckGapMs: Math.max(...during.map(longestAckGapMs)),
        },
        wholeRun: summary(allLatencies),
        stops: stops.map((s) =>
          typeof s === 'string' ? { error: s } : { closedFrames: s.closedFrames },
        ),
        recordings: canaryRecordings,
        recordingsComplete: canaryRecordings.every(
          (r) => r.status === 'ready' && r.frames === r.sent,
        ),
      },
      node: {
        rssMb: {
          baseline: Math.round(baseline.rssBytes / 2 ** 20),
          peak: Math.round(peakRss / 2 ** 20),
          end: Math.round(child.rssBytes() / 2 ** 20),
        },
        fds: {
          baseline: baseline.fds.total,
          peak: peakFds,
          end: endFds.total,
          baselineKinds: baseline.fds.kinds,
          endKinds: endFds.kinds,
        },
        // What the node measured itself, alone and under attack: spool syncs (the disk) and the
        // event loop's lag (the CPU), to tell which one the canaries' slow acks waited for.
        nodeMeasured: {
          alone: {
            spoolSync: phaseHistogram(aloneStart, attackStart, 'framegate_spool_sync_seconds'),
            ackLatency: phaseHistogram(aloneStart, attackStart, 'framegate_ack_latency_seconds'),
          },
          underAttack: {
            spoolSync: phaseHistogram(attackStart, attackEnd, 'framegate_spool_sync_seconds'),
            ackLatency: phaseHistogram(attackStart, attackEnd, 'framegate_ack_latency_seconds'),
            eventLoopLagP99Ms: summary(lagP99Ms),
          },
        },
        peakCounters: pick(peakMetrics, [
          'framegate_connections',
          'framegate_connection_slots',
          'framegate_sessions_live',
          'framegate_recording',
          'framegate_encoders',
          'framegate_audit',
        ]),
        running: child.running,
        logProblems: child.logProblems,
      },
      end: {
        metrics: pick(end, [
          'framegate_connections',
          'framegate_connection_slots',
          'framegate_sessions_live',
          'framegate_encoders_active',
        ]),
        databaseLiveSessions: realOpen,
        openDataFiles: endFds.dataFiles,
      },
      leaks: {
        slots: slotsLeft,
        sessionsLive: end.framegate_sessions_live ?? -1,
        sessionsLiveVsDatabase: (end.framegate_sessions_live ?? 0) - realOpen,
        connections: end.framegate_connections ?? -1,
        dataFileFds: endFds.dataFiles.length,
        fdsOverBaseline: endFds.total - baseline.fds.total,
      },
      attacks: tally.counts,
      aims: {
        canaryAckP99Ms: { aim: 250, value: summary(duringLatencies).p99 },
        zeroLeaks:
          slotsLeft === 0 &&
          (end.framegate_sessions_live ?? 0) === 0 &&
          realOpen === 0 &&
          (end.framegate_connections ?? 0) === 0 &&
          endFds.dataFiles.length === 0,
      },
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    await cleanup.run();
  }
}

main().catch((err: unknown) => {
  progress(`failed: ${describe(err)}`);
  process.exit(1);
});
