/**
 * bench:ingest: the full framegate stack (auth, sessions in Postgres, spool with group fdatasync,
 * merged acks) against a raw `ws` server doing the same framing with no durability, in one run,
 * and against a naive durable server (the raw one plus one writev + fdatasync per merged ack), which
 * shows what durability alone costs on the machine; and framegate as a NODE_ROLE=gateway node
 * (ingest only, recording left to workers elsewhere) against the same naive baseline, in the same
 * run. Each server runs in its own process; this
 * process is the load generator. Progress goes to
 * stderr, one JSON object with every figure next to its baseline to stdout.
 *
 * Env (all optional):
 * - BENCH_SECONDS (8) and BENCH_WARMUP_SECONDS (2): per streaming scenario;
 * - BENCH_CONNECTIONS ("10,100"; "none" skips the streaming runs);
 * - BENCH_SERVERS ("raw,naive,framegate,gateway"): which servers the streaming runs measure (all
 *   are started); "raw,naive,gateway" compares a gateway node with its baselines in a third of the
 *   time;
 * - BENCH_WINDOW (100): unacknowledged frames in flight per connection, the same on both sides;
 * - BENCH_FRAME_BYTES (25000): the size the generated 640x480 JPEG aims at;
 * - BENCH_PACED_FPS (30; 0 skips) and BENCH_PACED_CONNECTIONS (the first of BENCH_CONNECTIONS, or
 *   100 with none): the paced latency run, where framegate admits by its recording capacity;
 * - BENCH_PACED_WARMUP_SECONDS (5): the paced run's warm-up. Every connection opens at once, and
 *   framegate's first seconds of them (admission settling, 48 spools and encoders starting) are
 *   reported apart, as the connect burst (`warmupAckLatencyMs`), for both servers;
 * - BENCH_IDLE_CONNECTIONS (5000; 0 skips) and BENCH_IDLE_SETTLE_SECONDS (3): idle memory;
 * - BENCH_ZERO_MASK (false): zero masking keys, so neither side (un)masks payloads;
 * - BENCH_CPU_PROF_DIR: write a V8 CPU profile of the framegate server of the streaming runs;
 * - BENCH_CLOSE_TIMEOUT_SECONDS (300): after a streaming run, how long framegate may take to answer
 *   every `close` with `closed` (it finalizes each recording first, so this is the time its
 *   encoders need to catch up with what the run stored);
 * - BENCH_QUIET_WAIT_SECONDS (60): before each scenario, wait up to this long for the machine to
 *   be idle; a scenario that other processes disturbed anyway is run again, up to 3 times.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'pg';
import { runMigrations } from '../src/database/migrate';
import { testDir } from '../test/support/dirs';
import { PgProcess } from '../test/support/pg-process';
import { hsToken } from '../test/support/tokens';
import {
  BenchChild,
  machineCpuTicks,
  openFilesLimit,
  pressureTotals,
  TS_NODE,
} from './support/child';
import { benchJpeg } from './support/jpeg';
import {
  type ClientOptions,
  connectAll,
  type Endpoint,
  newProblems,
  round,
  sleep,
  streamRun,
  type StreamRunResult,
} from './support/load-client';
import {
  Cleanup,
  describe,
  filesystemOf,
  machineInfo,
  progressFor,
  sourceState,
} from './support/run-info';

const progress = progressFor('ingest');
const ROOT = resolve(__dirname, '..');
const CHANNEL = 'bench';
/**
 * Above this much CPU (in % of one core) used by neither server nor client during a window, the
 * run is flagged: someone else is using the machine.
 */
const OTHER_CPU_WARN_PCT = 25;
/** A scenario disturbed by other processes is run again, up to this many times in all. */
const DISTURBED_ATTEMPTS = 3;
/** The machine counts as quiet below this share of all cores busy (our idle servers included). */
const QUIET_BUSY_PCT = 15;
/** Set when this process re-executed itself with a higher open-files limit. */
const REEXEC_MARK = 'FRAMEGATE_BENCH_REEXEC';

interface Settings {
  servers: ReadonlySet<string>;
  seconds: number;
  warmupSeconds: number;
  pacedWarmupSeconds: number;
  connections: number[];
  window: number;
  frameBytes: number;
  pacedFps: number;
  pacedConnections: number;
  idleConnections: number;
  idleSettleSeconds: number;
  zeroMask: boolean;
  cpuProfDir: string | undefined;
  quietWaitSeconds: number;
  closeTimeoutSeconds: number;
}

function settingsFromEnv(env: NodeJS.ProcessEnv): Settings {
  const num = (name: string, fallback: number, min: number): number => {
    const raw = env[name];
    const value = raw === undefined || raw === '' ? fallback : Number(raw);
    if (!Number.isFinite(value) || value < min) {
      throw new Error(`${name} must be a number ≥ ${min}, got ${raw}`);
    }
    return value;
  };
  const list = env.BENCH_CONNECTIONS ?? '10,100';
  const connections = list === 'none' ? [] : list.split(',').map((s) => Number(s.trim()));
  if (connections.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`BENCH_CONNECTIONS must be a comma list of positive integers, or none`);
  }
  const servers = new Set((env.BENCH_SERVERS ?? 'raw,naive,framegate,gateway').split(','));
  if ([...servers].some((s) => !['raw', 'naive', 'framegate', 'gateway'].includes(s))) {
    throw new Error('BENCH_SERVERS must be a comma list of raw, naive, framegate, gateway');
  }
  return {
    servers,
    seconds: num('BENCH_SECONDS', 8, 0.5),
    warmupSeconds: num('BENCH_WARMUP_SECONDS', 2, 0),
    pacedWarmupSeconds: num('BENCH_PACED_WARMUP_SECONDS', 5, 0),
    connections,
    window: Math.floor(num('BENCH_WINDOW', 100, 1)),
    frameBytes: Math.floor(num('BENCH_FRAME_BYTES', 25_000, 1_000)),
    pacedFps: num('BENCH_PACED_FPS', 30, 0),
    pacedConnections: Math.floor(num('BENCH_PACED_CONNECTIONS', connections.at(0) ?? 100, 1)),
    idleConnections: Math.floor(num('BENCH_IDLE_CONNECTIONS', 5_000, 0)),
    idleSettleSeconds: num('BENCH_IDLE_SETTLE_SECONDS', 3, 0),
    zeroMask: /^(1|true|yes)$/i.test(env.BENCH_ZERO_MASK ?? ''),
    cpuProfDir: env.BENCH_CPU_PROF_DIR ? resolve(env.BENCH_CPU_PROF_DIR) : undefined,
    quietWaitSeconds: num('BENCH_QUIET_WAIT_SECONDS', 60, 0),
    closeTimeoutSeconds: num('BENCH_CLOSE_TIMEOUT_SECONDS', 300, 1),
  };
}

/**
 * `naive`: the raw server plus the same durability (one writev + fdatasync per merged ack).
 * `gateway`: framegate with NODE_ROLE=gateway (ingest only; recording is the workers' work, on
 * other machines, so none runs here).
 */
type Side = 'framegate' | 'gateway' | 'raw' | 'naive';

interface Server {
  side: Side;
  child: BenchChild;
  endpoint: Endpoint;
  /** framegate's Prometheus endpoint; null for the raw server. */
  metricsUrl: string | null;
  /** An admin token for framegate's admin API; null for the raw server. */
  adminToken: string | null;
}

/** framegate's recorder gauges from /metrics. */
interface RecorderGauges {
  encodersActive: number;
  encodersWaiting: number;
  encodersMax: number;
  /** Frames stored (and acknowledged) but not yet encoded, all sessions. */
  backlogFrames: number;
}

interface RunFigures extends StreamRunResult {
  /**
   * Server CPU over the window, in % of one core: the process (all its threads) and its children
   * (framegate's ffmpeg encoders); and the kernel's part of it.
   */
  serverCpuPct: number;
  serverSysPct: number;
  /** The server process alone, without its children. */
  serverProcessCpuPct: number;
  /** Server CPU time per acked frame, in microseconds. */
  serverCpuUsPerFrame: number;
  /** Whole machine (server, client, Postgres, kernel) busy over the window, % of all cores. */
  machineBusyPct: number;
  /**
   * CPU used by anything but the server and this client, in % of one core: Postgres, kernel
   * threads, and other people's processes. Large values mean the figures are disturbed.
   */
  otherCpuPct: number;
  /**
   * Pressure stall information over the window, in % of its time (null without PSI): some task
   * waiting for a CPU; some task, and every task, waiting for I/O (here: fdatasync and the disk).
   */
  pressure: { cpuSomePct: number; ioSomePct: number; ioFullPct: number } | null;
  /** At the end of the window: the server process, and with its children (ffmpeg encoders). */
  serverRssMB: number;
  serverTreeRssMB: number;
  /** framegate's recorder at the end of the window; null for raw. */
  recorderAtEnd: RecorderGauges | null;
}

interface IdleFigures {
  connections: number;
  rssBeforeMB: number;
  /** After the first half of the connections, 1 s later. */
  rssMiddleMB: number;
  rssAfterMB: number;
  /** (after − before) / connections, of the server process: the figure asked for. */
  perConnectionKB: number;
  /** (after − middle) / second half: a cross-check less exposed to the baseline's noise. */
  secondHalfPerConnectionKB: number;
  /** The same with the server's children (ffmpeg encoders started for idle sessions). */
  treeRssBeforeMB: number;
  treeRssAfterMB: number;
  treePerConnectionKB: number;
  /** framegate's recorder with every idle session open; null for raw. */
  recorder: RecorderGauges | null;
  /** Time to open every connection (handshake + `open` answered), concurrency as configured. */
  openSeconds: number;
  opensPerSec: number;
  stillOpen: number;
  /** SIGTERM to exit with every idle connection still open (framegate: drain, 1012 to all). */
  stopMs: number;
  stopExit: string;
  /** How the idle connections ended when the server stopped (framegate drains with 1012). */
  closesAtStop: Record<string, number>;
  /** Anything else the server sent the idle connections (`flow`, `error`). */
  flow: number;
  errors: Record<string, number>;
}

async function main(): Promise<number> {
  const settings = settingsFromEnv(process.env);
  // This process holds every client socket of the idle scenario.
  const neededFiles = settings.idleConnections + 1_000;
  const limit = openFilesLimit();
  if (limit.soft < neededFiles) {
    if (limit.hard >= neededFiles && process.env[REEXEC_MARK] === undefined) {
      progress(`open-files limit ${limit.soft} < ${neededFiles}: re-running with ${limit.hard}`);
      return reexec(limit.hard);
    }
    throw new Error(
      `the load generator needs ${neededFiles} open files (BENCH_IDLE_CONNECTIONS + 1000) but ` +
        `ulimit -n is ${limit.soft} (hard ${limit.hard}); raise it (ulimit -n ${neededFiles}) or ` +
        `lower BENCH_IDLE_CONNECTIONS`,
    );
  }

  const began = performance.now();
  const cleanup = new Cleanup(progress);
  cleanup.stopOnSignals();
  // Everything below is bounded; this catches a hang anywhere (a server that stops answering).
  const scenarios = settings.connections.length * 3 + (settings.pacedFps > 0 ? 2 : 0);
  const budgetMs =
    300_000 +
    scenarios *
      DISTURBED_ATTEMPTS *
      (settings.seconds +
        Math.max(settings.warmupSeconds, settings.pacedWarmupSeconds) +
        settings.quietWaitSeconds +
        settings.closeTimeoutSeconds +
        30) *
      1000 +
    (settings.idleConnections > 0 ? 240_000 + 2 * settings.quietWaitSeconds * 1000 : 0);
  const watchdog = setTimeout(() => {
    progress(`watchdog: no result after ${budgetMs / 1000} s, giving up`);
    void cleanup.run().finally(() => process.exit(1));
  }, budgetMs);
  watchdog.unref();

  const failures: string[] = [];
  const warnings: string[] = [];
  try {
    const root = testDir('bench');
    cleanup.add('temp dir', () => Promise.resolve(rmSync(root, { recursive: true, force: true })));

    const jpeg = await benchJpeg(settings.frameBytes);
    progress(`frame: 640x480 JPEG of ${jpeg.length} bytes (+12 header)`);
    const client: ClientOptions = { zeroMask: settings.zeroMask, connectConcurrency: 64 };
    const secret = randomBytes(32).toString('hex');

    progress('starting Postgres');
    const pg = new PgProcess(join(root, 'postgres'), 0);
    cleanup.add('postgres', () => pg.stop());
    const databaseUrl = await pg.start();
    await prepareDatabase(databaseUrl);

    const servers = new Map<string, BenchChild>();
    const start = async (
      side: Side,
      name: string,
      cpuProf: boolean,
      env: Record<string, string> = ADMISSION_OFF,
    ): Promise<Server> => {
      const server =
        side === 'framegate' || side === 'gateway'
          ? await startFramegate(root, name, side, databaseUrl, secret, settings, cpuProf, env)
          : await startRaw(
              root,
              name,
              settings,
              side === 'naive' ? join(root, 'naive-spool') : null,
            );
      cleanup.add(name, () => server.child.stop(30_000));
      servers.set(name, server.child);
      progress(`${name} listening (pid ${server.child.pid})`);
      return server;
    };

    // 1 and 2: throughput and ack latency, both servers up, one scenario at a time.
    const fg = await start('framegate', 'framegate', settings.cpuProfDir !== undefined);
    const raw = await start('raw', 'raw', false);
    const naive = await start('naive', 'naive', false);
    const gateway = await start('gateway', 'gateway', false, GATEWAY);
    const throughput: Array<Record<string, unknown>> = [];
    const run = async (
      server: Server,
      connections: number,
      fps?: number,
      admission = false,
    ): Promise<RunFigures> => {
      const label = `${server.side} ${connections} conns${fps ? ` at ${fps} fps` : ''}`;
      const warmupSeconds = fps ? settings.pacedWarmupSeconds : settings.warmupSeconds;
      let best: RunFigures | null = null;
      for (let attemptNo = 1; attemptNo <= DISTURBED_ATTEMPTS; attemptNo++) {
        await waitForQuiet(settings.quietWaitSeconds);
        progress(
          `${label}, ${fps ? 'paced' : `window ${settings.window}`}, ` +
            `${warmupSeconds}+${settings.seconds} s`,
        );
        const figures = await measuredRun(
          server,
          settings,
          client,
          jpeg,
          connections,
          fps,
          admission,
          warmupSeconds,
        );
        progress(
          `  ${figures.framesPerSec} frames/s, ${figures.mbPerSec} MB/s, ack p50 ${figures.ackLatencyMs.p50} ms ` +
            `p99 ${figures.ackLatencyMs.p99} ms, CPU server ${figures.serverCpuPct}% ` +
            `(process ${figures.serverProcessCpuPct}%) ` +
            `client ${figures.clientCpuPct}% other ${figures.otherCpuPct}%` +
            (figures.pressure
              ? `; I/O stalled ${figures.pressure.ioSomePct}% of the time (all tasks ` +
                `${figures.pressure.ioFullPct}%)`
              : '') +
            `; all closed after ` +
            `${figures.closeSeconds} s` +
            (figures.recorderAtEnd
              ? `; encoder backlog at the end ${figures.recorderAtEnd.backlogFrames} frames`
              : ''),
        );
        if (best === null || figures.otherCpuPct < best.otherCpuPct) {
          best = figures;
        }
        if (figures.otherCpuPct <= OTHER_CPU_WARN_PCT) {
          break;
        }
        progress(`  disturbed: other processes used ${figures.otherCpuPct}% of a core`);
      }
      // The least disturbed attempt; flagged when even that one was disturbed.
      const figures = best as RunFigures;
      if (figures.otherCpuPct > OTHER_CPU_WARN_PCT) {
        warnings.push(
          `${label}: disturbed in all ${DISTURBED_ATTEMPTS} attempts; the least disturbed is ` +
            `reported (other processes used ${figures.otherCpuPct}% of a core)`,
        );
      }
      return figures;
    };
    for (const connections of settings.connections) {
      const entry: Record<string, unknown> = { connections };
      for (const server of [raw, naive, fg, gateway].filter((s) => settings.servers.has(s.side))) {
        entry[server.side] = await attempt(failures, `${server.side} ${connections} conns`, () =>
          run(server, connections),
        );
      }
      entry.ratio = ratios(entry.framegate, entry.raw);
      // What durability alone costs on this machine, and framegate against that floor.
      entry.naiveRatio = ratios(entry.naive, entry.raw);
      entry.ratioToNaive = ratios(entry.framegate, entry.naive);
      entry.gatewayRatioToNaive = ratios(entry.gateway, entry.naive);
      throughput.push(entry);
    }
    let paced: Record<string, unknown> | null = null;
    const connections = settings.pacedConnections;
    if (settings.pacedFps > 0) {
      paced = { connections, fps: settings.pacedFps };
      for (const server of [raw, naive]) {
        paced[server.side] = await attempt(failures, `${server.side} paced`, () =>
          run(server, connections, settings.pacedFps),
        );
      }
    }
    const fgStop = await fg.child.stop(30_000);
    await raw.child.stop(30_000);
    await naive.child.stop(30_000);
    const gatewayStop = await gateway.child.stop(30_000);
    if (gatewayStop.code !== 0) {
      failures.push(`gateway exited with ${gatewayStop.code ?? gatewayStop.signal}`);
    }
    if (paced) {
      // Far beyond what the node can record: a framegate of its own, admitting by its measured
      // recording capacity (the default), its clients keeping to the caps it gives them.
      const fgPaced = await start('framegate', 'framegate-paced', false, {});
      paced.framegate = await attempt(failures, 'framegate paced', () =>
        run(fgPaced, connections, settings.pacedFps, true),
      );
      paced.recordings = await attempt(failures, 'framegate paced recordings', () =>
        recordingsOf(databaseUrl, 'framegate-paced'),
      );
      paced.capacity = await attempt(failures, 'framegate paced capacity', () =>
        capacityOf(fgPaced),
      );
      const pacedStop = await fgPaced.child.stop(30_000);
      if (pacedStop.code !== 0) {
        failures.push(`framegate (paced) exited with ${pacedStop.code ?? pacedStop.signal}`);
      }
    }
    progress(`framegate stopped in ${fgStop.ms} ms (exit ${fgStop.code ?? fgStop.signal})`);
    if (fgStop.code !== 0) {
      failures.push(`framegate (throughput) exited with ${fgStop.code ?? fgStop.signal}`);
    }

    // 3: idle memory, on fresh servers so that the heap left by the streaming runs is not in it.
    let idle: Record<string, unknown> | null = null;
    if (settings.idleConnections > 0) {
      idle = { connections: settings.idleConnections };
      for (const side of ['raw', 'framegate'] as const) {
        idle[side] = await attempt(failures, `${side} idle`, async () => {
          await waitForQuiet(settings.quietWaitSeconds);
          const server = await start(side, `${side}-idle`, false);
          return idleRun(server, settings, client, jpeg);
        });
      }
      idle.ratio = idleRatio(idle.framegate, idle.raw);
    }

    const result = {
      bench: 'ingest',
      date: new Date().toISOString(),
      machine: machineInfo(),
      source: sourceState(),
      settings: {
        servers: [...settings.servers],
        seconds: settings.seconds,
        warmupSeconds: settings.warmupSeconds,
        pacedWarmupSeconds: settings.pacedWarmupSeconds,
        connections: settings.connections,
        window: settings.window,
        pacedFps: settings.pacedFps,
        pacedConnections: settings.pacedConnections,
        closeTimeoutSeconds: settings.closeTimeoutSeconds,
        idleSettleSeconds: settings.idleSettleSeconds,
        frame: { jpegBytes: jpeg.length, messageBytes: jpeg.length + 12 },
        ack: { intervalMs: 200, maxFrames: 50 },
        zeroMask: settings.zeroMask,
        dataDirFilesystem: filesystemOf(root),
      },
      throughput,
      ackLatency: {
        connections: settings.connections.at(0) ?? null,
        saturated: latencyPair(throughput[0]),
        paced: paced ? latencyPair(paced) : null,
      },
      paced,
      idle,
      aims: aims(throughput, paced, idle),
      // Warnings and errors the servers logged (pino level 40+), per server process.
      serverLogs: Object.fromEntries(
        [...servers].map(([name, child]) => [name, child.logProblems]),
      ),
      framegateStopMs: fgStop.ms,
      failures,
      warnings,
      durationSeconds: round((performance.now() - began) / 1000, 1),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return failures.length > 0 ? 1 : 0;
  } finally {
    clearTimeout(watchdog);
    progress('cleaning up');
    await cleanup.run();
  }
}

/** Migrations, then a channel override lifting the per-connection frame-rate/bandwidth quota. */
async function prepareDatabase(url: string): Promise<void> {
  await runMigrations({ url, poolMax: 2, nodeId: 'bench' });
  const pool = new Pool({ connectionString: url, max: 1 });
  try {
    // The quota is per connection (30 fps / 16 Mbit/s by default); a saturating client is far over
    // it. The limiter still runs for every frame; it just never sends `flow`.
    await pool.query(
      `INSERT INTO channel_quotas (channel, max_connections, handshakes_per_min, max_fps, max_kbps)
       VALUES ($1, 1000000, 100000, 1000000, 2000000000)`,
      [CHANNEL],
    );
  } finally {
    await pool.end();
  }
}

/**
 * The throughput and idle scenarios measure the ingest path: admission by recording capacity
 * would refuse most of their 30 fps sessions (the paced scenario measures that), so it is lifted.
 */
const ADMISSION_OFF = { RECORDING_CAPACITY_FPS: '1000000' };

/**
 * A gateway node: no worker runs on this machine (in a deployment they have machines of their
 * own), so `close` does not wait for one: `closed` says `pending` and the recording work stays
 * queued in `recording_work`.
 */
const GATEWAY = { ...ADMISSION_OFF, NODE_ROLE: 'gateway', RECORDING_CLOSE_WAIT_MS: '0' };

async function startFramegate(
  root: string,
  name: string,
  side: 'framegate' | 'gateway',
  databaseUrl: string,
  secret: string,
  settings: Settings,
  cpuProf: boolean,
  extraEnv: Record<string, string>,
): Promise<Server> {
  const dataDir = join(root, `data-${name}`);
  const { child, match } = await BenchChild.start({
    name,
    script: join(ROOT, 'src/main.ts'),
    // A working directory of its own: src/main.ts would load a developer's .env from the cwd.
    cwd: root,
    nodeArgs:
      cpuProf && settings.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${settings.cpuProfDir}`] : [],
    minOpenFiles: settings.idleConnections * 2 + 1_000,
    env: {
      PATH: process.env.PATH,
      TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'),
      NODE_ENV: 'production',
      NODE_ID: name,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      AUTH_JWT_SECRET: secret,
      QUOTA_NODE_MAX_CONNECTIONS: '1000000',
      QUOTA_CHANNEL_MAX_CONNECTIONS: '1000000',
      QUOTA_HANDSHAKES_PER_MIN: '100000',
      QUOTA_IP_HANDSHAKES_PER_MIN: '100000',
      ...extraEnv,
    },
    ready: /"url":"([^"]+)"[^\n]*"msg":"framegate listening"/,
    readyTimeoutMs: 120_000,
  });
  const url = `${match[1].replace(/^http/, 'ws')}/v1/stream`;
  return {
    side,
    child,
    metricsUrl: `${match[1]}/metrics`,
    adminToken: hsToken({ sub: 'bench-admin', scope: 'admin', secret }),
    endpoint: {
      url,
      headersFor: (i) => ({
        authorization: `Bearer ${hsToken({ sub: `bench-${i}`, channel: CHANNEL, secret })}`,
      }),
    },
  };
}

async function startRaw(
  root: string,
  name: string,
  settings: Settings,
  spoolDir: string | null,
): Promise<Server> {
  if (spoolDir) {
    mkdirSync(spoolDir, { recursive: true });
  }
  const { child, match } = await BenchChild.start({
    name,
    script: join(ROOT, 'bench/support/raw-server.ts'),
    cwd: root,
    minOpenFiles: settings.idleConnections + 1_000,
    env: {
      PATH: process.env.PATH,
      TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'),
      ACK_INTERVAL_MS: '200',
      ACK_MAX_FRAMES: '50',
      RAW_SPOOL_DIR: spoolDir ?? undefined,
    },
    ready: /READY (\d+)/,
  });
  return {
    side: spoolDir ? 'naive' : 'raw',
    child,
    endpoint: { url: `ws://127.0.0.1:${match[1]}/v1/stream`, headersFor: () => ({}) },
    metricsUrl: null,
    adminToken: null,
  };
}

async function measuredRun(
  server: Server,
  settings: Settings,
  client: ClientOptions,
  payload: Buffer,
  connections: number,
  fps: number | undefined,
  admission: boolean,
  warmupSeconds: number,
): Promise<RunFigures> {
  let cpu0 = { user: 0, sys: 0, own: 0 };
  let cpu = { user: 0, sys: 0, own: 0 };
  let machine0 = { busy: 0, total: 0 };
  let machineBusyPct = 0;
  let recorderAtEnd: RecorderGauges | null = null;
  let pressure0 = pressureTotals();
  let windowStart = 0;
  let pressure: RunFigures['pressure'] = null;
  let rss = 0;
  let treeRss = 0;
  const result = await streamRun({
    endpoint: server.endpoint,
    client,
    connections,
    window: settings.window,
    payload,
    warmupMs: warmupSeconds * 1000,
    measureMs: settings.seconds * 1000,
    fps,
    admission,
    closeTimeoutMs: settings.closeTimeoutSeconds * 1000,
    onWindow: async (edge) => {
      if (edge === 'start') {
        cpu0 = server.child.cpuMs();
        machine0 = machineCpuTicks();
        pressure0 = pressureTotals();
        windowStart = performance.now();
      } else {
        const now = server.child.cpuMs();
        cpu = { user: now.user - cpu0.user, sys: now.sys - cpu0.sys, own: now.own - cpu0.own };
        const m = machineCpuTicks();
        machineBusyPct = ((m.busy - machine0.busy) / (m.total - machine0.total)) * 100;
        const p = pressureTotals();
        const windowUs = (performance.now() - windowStart) * 1000;
        pressure =
          p && pressure0
            ? {
                cpuSomePct: round(((p.cpuSome - pressure0.cpuSome) / windowUs) * 100, 1),
                ioSomePct: round(((p.ioSome - pressure0.ioSome) / windowUs) * 100, 1),
                ioFullPct: round(((p.ioFull - pressure0.ioFull) / windowUs) * 100, 1),
              }
            : null;
        rss = server.child.rssBytes();
        treeRss = server.child.treeRssBytes();
        recorderAtEnd = await recorderGauges(server);
      }
    },
  });
  return {
    ...result,
    serverCpuPct: round(((cpu.user + cpu.sys) / (result.measuredSeconds * 1000)) * 100, 1),
    serverSysPct: round((cpu.sys / (result.measuredSeconds * 1000)) * 100, 1),
    serverProcessCpuPct: round((cpu.own / (result.measuredSeconds * 1000)) * 100, 1),
    serverCpuUsPerFrame:
      result.ackedFrames > 0 ? round(((cpu.user + cpu.sys) * 1000) / result.ackedFrames, 1) : 0,
    machineBusyPct: round(machineBusyPct, 1),
    otherCpuPct: round(
      machineBusyPct * cpus().length -
        (cpu.user + cpu.sys) / (result.measuredSeconds * 10) -
        result.clientCpuPct,
      1,
    ),
    pressure,
    serverRssMB: mb(rss),
    serverTreeRssMB: mb(treeRss),
    recorderAtEnd,
  };
}

/**
 * The sessions a node closed and whether each one's recording is complete: ready, with as many
 * frames as the session stored.
 */
async function recordingsOf(
  databaseUrl: string,
  node: string,
): Promise<{ sessions: number; complete: number; incomplete: string[]; notClosed: number }> {
  const pool = new Pool({ connectionString: databaseUrl, max: 1 });
  try {
    const { rows } = await pool.query<{
      id: string;
      status: string;
      video_frames: string;
      rec_status: string | null;
      frame_count: number | null;
    }>(
      `SELECT s.id, s.status, s.video_frames, r.status AS rec_status, r.frame_count
       FROM sessions s LEFT JOIN recordings r ON r.session_id = s.id WHERE s.node = $1`,
      [node],
    );
    const closed = rows.filter((r) => r.status === 'closed');
    const incomplete = closed.filter(
      (r) => r.rec_status !== 'ready' || r.frame_count !== Number(r.video_frames),
    );
    return {
      sessions: rows.length,
      complete: closed.length - incomplete.length,
      incomplete: incomplete.map(
        (r) => `${r.id}: ${r.rec_status} ${r.frame_count}/${r.video_frames}`,
      ),
      notClosed: rows.length - closed.length,
    };
  } finally {
    await pool.end();
  }
}

/** framegate's recording capacity as it saw it at the end (`/v1/admin/stats`). */
async function capacityOf(server: Server): Promise<unknown> {
  if (server.metricsUrl === null) {
    return null;
  }
  const base = server.metricsUrl.replace(/\/metrics$/, '');
  const res = await fetch(`${base}/v1/admin/stats`, {
    headers: { authorization: `Bearer ${server.adminToken}` },
  });
  return ((await res.json()) as { capacity: unknown }).capacity;
}

/** framegate's recorder gauges from its /metrics; null for raw or when they cannot be read. */
async function recorderGauges(server: Server): Promise<RecorderGauges | null> {
  if (server.metricsUrl === null) {
    return null;
  }
  try {
    const res = await fetch(server.metricsUrl, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    const gauge = (name: string): number =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    return {
      encodersActive: gauge('framegate_encoders_active'),
      encodersWaiting: gauge('framegate_encoders_waiting'),
      encodersMax: gauge('framegate_encoders_max'),
      backlogFrames: gauge('framegate_recorder_backlog_frames'),
    };
  } catch (err) {
    progress(`  cannot read ${server.metricsUrl}: ${describe(err)}`);
    return null;
  }
}

async function idleRun(
  server: Server,
  settings: Settings,
  client: ClientOptions,
  payload: Buffer,
): Promise<IdleFigures> {
  const count = settings.idleConnections;
  const half = Math.floor(count / 2);
  // A light paced stream first (a few MB, not the hundreds a saturating one churns through), so
  // that code loaded lazily and pools filled on first use are in the baseline, while the
  // allocator is not left holding freed buffers that idle sessions would then fill unseen.
  await streamRun({
    endpoint: server.endpoint,
    client,
    connections: 10,
    window: settings.window,
    payload,
    warmupMs: 0,
    measureMs: 1_000,
    fps: 10,
    closeTimeoutMs: settings.closeTimeoutSeconds * 1000,
  });
  await sleep(2_000);
  const before = await rssMedian(server.child);
  const treeBefore = server.child.treeRssBytes();
  progress(`${server.side}: opening ${count} idle sessions (RSS before ${mb(before)} MB)`);
  const problems = newProblems();
  const t0 = performance.now();
  const conns = await connectAll(server.endpoint, half, settings.window, client, problems);
  const firstHalfSeconds = (performance.now() - t0) / 1000;
  await sleep(1_000);
  const middle = await rssMedian(server.child);
  const t1 = performance.now();
  conns.push(
    ...(await connectAll(server.endpoint, count - half, settings.window, client, problems, half)),
  );
  const openSeconds = firstHalfSeconds + (performance.now() - t1) / 1000;
  await sleep(settings.idleSettleSeconds * 1000);
  const after = await rssMedian(server.child);
  const treeAfter = server.child.treeRssBytes();
  const recorder = await recorderGauges(server);
  const stillOpen = conns.filter((c) => c.ws.readyState === c.ws.OPEN).length;
  const perConnection = (after - before) / count / 1024;
  progress(
    `  opened in ${round(openSeconds, 1)} s; RSS after ${mb(after)} MB: ` +
      `${round(perConnection, 1)} KB per connection; with children ${mb(treeBefore)} → ` +
      `${mb(treeAfter)} MB` +
      (recorder
        ? `; encoders ${recorder.encodersActive} active, ${recorder.encodersWaiting} waiting`
        : ''),
  );
  const stop = await server.child.stop(30_000);
  for (const c of conns) {
    c.ws.terminate();
  }
  await Promise.all(conns.map((c) => c.closed));
  progress(`  stopped in ${stop.ms} ms (exit ${stop.code ?? stop.signal})`);
  return {
    connections: count,
    rssBeforeMB: mb(before),
    rssMiddleMB: mb(middle),
    rssAfterMB: mb(after),
    perConnectionKB: round(perConnection, 2),
    secondHalfPerConnectionKB: round((after - middle) / (count - half) / 1024, 2),
    treeRssBeforeMB: mb(treeBefore),
    treeRssAfterMB: mb(treeAfter),
    treePerConnectionKB: round((treeAfter - treeBefore) / count / 1024, 2),
    recorder,
    openSeconds: round(openSeconds, 2),
    opensPerSec: round(count / openSeconds, 0),
    stillOpen,
    stopMs: stop.ms,
    stopExit: stop.killed ? 'SIGKILL after 30 s' : String(stop.code ?? stop.signal),
    closesAtStop: problems.closes,
    flow: problems.flow,
    errors: problems.errors,
  };
}

/**
 * Waits (at most `maxSeconds`) until the machine is quiet: the CPU figures of a scenario mean
 * little while someone else's test suite runs on the same cores.
 */
async function waitForQuiet(maxSeconds: number): Promise<void> {
  const deadline = performance.now() + maxSeconds * 1000;
  let said = false;
  for (;;) {
    const a = machineCpuTicks();
    // Two seconds: a test suite next door often pauses for a moment between tests.
    await sleep(2_000);
    const b = machineCpuTicks();
    const busy = ((b.busy - a.busy) / (b.total - a.total)) * 100;
    if (busy < QUIET_BUSY_PCT) {
      return;
    }
    if (performance.now() >= deadline) {
      progress(`  machine still ${round(busy, 0)}% busy after ${maxSeconds} s; running anyway`);
      return;
    }
    if (!said) {
      progress(`  machine ${round(busy, 0)}% busy with other work; waiting for it to calm down`);
      said = true;
    }
  }
}

/** Median of five RSS samples 200 ms apart: one sample can catch a GC in the middle. */
async function rssMedian(child: BenchChild): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(child.rssBytes());
    await sleep(200);
  }
  return samples.sort((a, b) => a - b)[2];
}

async function attempt<T>(
  failures: string[],
  what: string,
  fn: () => Promise<T>,
): Promise<T | { error: string }> {
  try {
    return await fn();
  } catch (err) {
    progress(`${what} failed: ${describe(err)}`);
    failures.push(`${what}: ${describe(err)}`);
    return { error: describe(err) };
  }
}

function isRun(v: unknown): v is RunFigures {
  return typeof v === 'object' && v !== null && 'framesPerSec' in v;
}

function isIdle(v: unknown): v is IdleFigures {
  return typeof v === 'object' && v !== null && 'perConnectionKB' in v;
}

function ratios(framegate: unknown, raw: unknown): Record<string, number> | null {
  if (!isRun(framegate) || !isRun(raw)) {
    return null;
  }
  return {
    framesPerSec: round(framegate.framesPerSec / raw.framesPerSec, 3),
    mbPerSec: round(framegate.mbPerSec / raw.mbPerSec, 3),
  };
}

function idleRatio(framegate: unknown, raw: unknown): Record<string, number> | null {
  if (!isIdle(framegate) || !isIdle(raw)) {
    return null;
  }
  return {
    perConnection: round(framegate.perConnectionKB / raw.perConnectionKB, 2),
    perConnectionWithChildren: round(framegate.treePerConnectionKB / raw.treePerConnectionKB, 2),
  };
}

function latencyPair(entry: Record<string, unknown> | undefined): Record<string, unknown> | null {
  if (!entry) {
    return null;
  }
  const pick = (v: unknown) =>
    isRun(v)
      ? {
          p50: v.ackLatencyMs.p50,
          p99: v.ackLatencyMs.p99,
          samples: v.ackLatencyMs.samples,
          warmupP99: v.warmupAckLatencyMs.p99,
        }
      : null;
  return { framegate: pick(entry.framegate), raw: pick(entry.raw), naive: pick(entry.naive) };
}

/** The aims of the task, reported (not asserted). */
function aims(
  throughput: Array<Record<string, unknown>>,
  paced: Record<string, unknown> | null,
  idle: Record<string, unknown> | null,
): Record<string, unknown> {
  const at100 = throughput.find((t) => t.connections === 100);
  const ratio100 = (at100?.ratio as { mbPerSec?: number } | null)?.mbPerSec ?? null;
  const at10 = throughput.find((t) => t.connections === 10);
  const p99At10 = isRun(at10?.framegate) ? at10.framegate.ackLatencyMs.p99 : null;
  const pacedP99 = isRun(paced?.framegate) ? paced.framegate.ackLatencyMs.p99 : null;
  const naivePacedP99 = isRun(paced?.naive) ? paced.naive.ackLatencyMs.p99 : null;
  const pacedToNaive =
    pacedP99 === null || naivePacedP99 === null ? null : round(pacedP99 / naivePacedP99, 2);
  const recordings = paced?.recordings as { complete: number; sessions: number } | undefined;
  const idleRatioValue = (idle?.ratio as { perConnection?: number } | null)?.perConnection ?? null;
  const gatewayToNaive = (connections: number): number | null =>
    (
      throughput.find((t) => t.connections === connections)?.gatewayRatioToNaive as {
        framesPerSec?: number;
      } | null
    )?.framesPerSec ?? null;
  const gatewayAim = (value: number | null) => ({
    aim: '>= 0.85 (issue 15: a gateway node against naive durable, acked frames/s)',
    value,
    met: value === null ? null : value >= 0.85,
  });
  return {
    gatewayToNaiveAt10: gatewayAim(gatewayToNaive(10)),
    gatewayToNaiveAt100: gatewayAim(gatewayToNaive(100)),
    throughputRatioAt100: {
      aim: '>= 0.70',
      value: ratio100,
      met: ratio100 === null ? null : ratio100 >= 0.7,
    },
    ackP99MsAt10Saturated: {
      aim: '<= 250',
      value: p99At10,
      met: p99At10 === null ? null : p99At10 <= 250,
    },
    pacedAckP99ToNaive: {
      aim: '<= 2 (issue 10: paced, far beyond recording capacity, against naive durable)',
      value: pacedToNaive,
      met: pacedToNaive === null ? null : pacedToNaive <= 2,
    },
    pacedRecordingsComplete: {
      aim: 'every admitted session closed with a complete recording',
      value: recordings ? `${recordings.complete}/${recordings.sessions}` : null,
      met: recordings ? recordings.complete === recordings.sessions : null,
    },
    idleMemoryRatio: {
      aim: '<= 2',
      value: idleRatioValue,
      met: idleRatioValue === null ? null : idleRatioValue <= 2,
    },
  };
}

function mb(bytes: number): number {
  return round(bytes / 1e6, 1);
}

/** Runs this benchmark again under bash with a raised open-files limit; resolves its exit code. */
function reexec(files: number): Promise<number> {
  return new Promise((resolvePromise) => {
    const child = spawn(
      'bash',
      [
        '-c',
        'ulimit -n "$0" && exec "$@"',
        String(files),
        process.execPath,
        '-r',
        TS_NODE,
        __filename,
      ],
      { stdio: 'inherit', env: { ...process.env, [REEXEC_MARK]: '1' } },
    );
    const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.once('exit', (code) => resolvePromise(code ?? 1));
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    progress(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
