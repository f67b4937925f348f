/**
 * bench:soak (issue 15): a cluster under a long, churning load, checked for leaks and losses.
 * Three framegate nodes (test/support/cluster.ts: one Postgres, a shared spool and recordings
 * volume, Debian's nginx in round robin in front) and BENCH_SOAK_CONNECTIONS clients of the Node
 * SDK (`@framegate/client`, as built) in this process, each streaming one session at
 * BENCH_SOAK_FPS through nginx, for BENCH_SOAK_SECONDS, while:
 * - clients are killed at random (BENCH_SOAK_KILLS_PER_MIN): half are network cuts (the socket is
 *   dropped and the client is not told, as on a network that dies without a FIN: the SDK notices
 *   by its liveness timeout, 30 s, then reconnects through nginx and resumes on whichever node
 *   nginx picks; so the resume window must be longer than that), half are clients that die for
 *   good (`stop()`: the session is left to its resume window and abandoned; a new client opens a
 *   new session in its place);
 * - one node is killed with -9 (its main process only: its ffmpeg children must end by
 *   themselves) at BENCH_SOAK_RESTART_AT of the run and started again BENCH_SOAK_RESTART_DOWN_S
 *   later; its clients resume on the others.
 * Most sessions send H.264 (the camera scene of bench/support/scene.ts, recorded as sent); a few
 * (BENCH_SOAK_JPEG_SESSIONS) send JPEGs, so each node runs x264 encoders the kill can orphan.
 *
 * Then every client closes, every abandoned session is finalized, and the bench checks: leases
 * left in Postgres (0), acknowledged frames missing from a spool (0), spools whose records are not
 * seqs 1..n exactly once (0), session rows whose counts disagree with their spool (0), recordings
 * not ready (0), a sample of recordings whose ffprobe frame count differs from the spool (0), and
 * ffmpeg processes left over (0). RSS and CPU per node are sampled throughout, next to the same
 * nodes idle before the load (the baseline). It also reports clients that stopped with an error
 * (by cause: a session that could not be resumed shows here), upgrades refused and HTTP
 * fallbacks, and writes each node's log to $BENCH_DATA_DIR/soak-logs. Progress goes to stderr, one
 * JSON object to stdout.
 *
 * Env (all optional): BENCH_SOAK_CONNECTIONS (2000), BENCH_SOAK_SECONDS (600), BENCH_SOAK_FPS (1),
 * BENCH_SOAK_NODES (3), BENCH_SOAK_JPEG_SESSIONS (30), BENCH_SOAK_KILLS_PER_MIN (60),
 * BENCH_SOAK_RESTART_AT (0.5), BENCH_SOAK_RESTART_DOWN_S (5), BENCH_SOAK_RAMP_S (60),
 * BENCH_SOAK_PROBE_SAMPLE (40), BENCH_SOAK_RESUME_WINDOW_MS (60000, the service's default), BENCH_DATA_DIR.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'pg';
import type * as Sdk from '../client/src/node';
import { locateTool } from '../src/media/ffmpeg-locator';
import { scanSpool } from '../src/spool/spool';
import { Cluster } from '../test/support/cluster';
import { stopServices } from '../test/support/service-process';
import { hsToken } from '../test/support/tokens';
import { rssOf } from './support/child';
import { treeCpuMs } from './support/recording-cpu';
import { round, sleep } from './support/recording-load';
import {
  Cleanup,
  cpuModel,
  describe,
  memoryGB,
  progressFor,
  sourceState,
} from './support/run-info';
import {
  benchDataDir,
  CAMERA_GOP,
  cameraScene,
  type EncodedScene,
  encodeScene,
  sceneJpegs,
} from './support/scene';

// The SDK ships as ESM; the bench runs it as built (`npm run bench:soak` builds it first).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const sdk = require('../client/dist/client/src/node.js') as typeof Sdk;

const progress = progressFor('soak');
const num = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);

const settings = {
  connections: num('BENCH_SOAK_CONNECTIONS', 2000),
  seconds: num('BENCH_SOAK_SECONDS', 600),
  fps: num('BENCH_SOAK_FPS', 1),
  nodes: num('BENCH_SOAK_NODES', 3),
  jpegSessions: num('BENCH_SOAK_JPEG_SESSIONS', 30),
  killsPerMin: num('BENCH_SOAK_KILLS_PER_MIN', 60),
  restartAt: num('BENCH_SOAK_RESTART_AT', 0.5),
  restartDownS: num('BENCH_SOAK_RESTART_DOWN_S', 5),
  rampS: num('BENCH_SOAK_RAMP_S', 60),
  probeSample: num('BENCH_SOAK_PROBE_SAMPLE', 40),
  resumeWindowMs: num('BENCH_SOAK_RESUME_WINDOW_MS', 60_000),
  idleSeconds: 20,
  sampleMs: 5_000,
};

const CHANNEL = 'soak';
const SIZE = { width: 640, height: 480 };
const H264_KBPS = 100;
/** Streams of the same scene from other starting frames, so sessions do not all send the same. */
const PHASES = 10;
/** Frames from one key frame to the next: 4 s at 1 fps (the server wants one every 5 s). */
const KEY_EVERY = 4;

interface Media {
  openVideo: { width: number; height: number; fps?: number; codec?: string; description?: string };
  chunks: ReadonlyArray<{ data: Buffer; key: boolean }>;
}

/** One client slot: the SDK client streaming in it now, and every session it ever opened. */
interface Slot {
  index: number;
  media: Media;
  client: Sdk.FramegateClient | null;
  /** The sockets of the current client, the newest last (a network cut drops the live one). */
  sockets: Sdk.SocketConnection[];
  session: SessionTrack | null;
  nextDue: number;
  sending: boolean;
}

interface SessionTrack {
  id: string;
  slot: number;
  /** Frames handed to the SDK. */
  sent: number;
  /** The frame number of the last key frame sent or asked for (the server's `keyframe`). */
  keyAt: number;
  /** The highest seq the server acknowledged. */
  acked: number;
  /** Times the SDK resumed it (after a network cut or a node's death). */
  resumes: number;
  ended: 'closed' | 'stopped' | null;
  closedFrames: number | null;
  recordingStatus: string | null;
}

async function main(): Promise<void> {
  const cleanup = new Cleanup(progress);
  cleanup.stopOnSignals();
  const started = performance.now();
  const dataDir = benchDataDir();
  const ffmpegPath = locateTool('ffmpeg', process.env.FFMPEG_PATH).path;
  const ffprobePath = locateTool('ffprobe', process.env.FFPROBE_PATH).path;

  progress('material: the camera scene, H.264 from several starting frames, and JPEGs');
  const scene = await cameraScene({ ...SIZE, ffmpegPath, dataDir });
  const streams: EncodedScene[] = [];
  for (let k = 0; k < PHASES; k++) {
    streams.push(
      await encodeScene(
        scene,
        'h264',
        H264_KBPS,
        ffmpegPath,
        Math.round((k * CAMERA_GOP) / PHASES),
      ),
    );
  }
  const jpegs = await sceneJpegs(scene, 70, ffmpegPath);
  const jpegMedia: Media = {
    openVideo: { ...SIZE, fps: settings.fps },
    chunks: jpegs.map((data) => ({ data, key: false })),
  };
  const mediaOf = (i: number): Media =>
    i < settings.jpegSessions
      ? jpegMedia
      : {
          openVideo: { ...streams[i % PHASES].openVideo, fps: settings.fps },
          chunks: streams[i % PHASES].chunks,
        };

  progress(`cluster: ${settings.nodes} nodes behind nginx`);
  const cluster = await Cluster.start({
    nodes: settings.nodes,
    env: {
      QUOTA_NODE_MAX_CONNECTIONS: String(settings.connections * 2),
      QUOTA_CHANNEL_MAX_CONNECTIONS: String(settings.connections * 2),
      QUOTA_HANDSHAKES_PER_MIN: String(settings.connections * 20),
      QUOTA_IP_HANDSHAKES_PER_MIN: String(settings.connections * 20),
      HTTP_RATE_LIMIT_PER_MIN: '1000000',
      RESUME_WINDOW_MS: String(settings.resumeWindowMs),
      // The service's defaults, not the cluster tests' short lease (250 ms / 1.5 s): under this
      // load a renewal can take over a second, and a node that lapses fences itself (1012 to every
      // session); the first run of 2026-12-03 flapped so (docs/performance.md, bench:soak).
      NODE_HEARTBEAT_MS: '2000',
      NODE_DEAD_AFTER_MS: '10000',
      // Checks of ~2000 recordings at the end would only lengthen the run; bench:codecs prices them.
      RECORDING_DECODE_CHECK: 'false',
      // The spools are what the check compares everything with.
      KEEP_SPOOL: 'true',
    },
  });
  cleanup.add('cluster', async () => {
    await cluster.stop();
    await stopServices();
  });
  const pool = new Pool({ connectionString: cluster.pg.url, max: 2 });
  cleanup.add('pool', () => pool.end());
  const admin = hsToken({ sub: 'soak-admin', scope: 'admin' });

  try {
    const idle = await sampleNodes(cluster, settings.idleSeconds * 1000);
    progress(`idle baseline: ${JSON.stringify(idle)}`);

    const sessions = new Map<string, SessionTrack>();
    const slots: Slot[] = [];
    /** The killed node's log up to its death ([name, text]). */
    const logs: Array<[string, string]> = [];
    const counters = {
      networkCuts: 0,
      clientDeaths: 0,
      reconnects: 0,
      sendErrors: 0,
      openErrors: 0,
      serverErrors: {} as Record<string, number>,
      badFrameSamples: [] as string[],
      reconnectCauses: {} as Record<string, number>,
      /** Clients that stopped with an error (a final close code, or retries exhausted), by cause. */
      clientFailures: {} as Record<string, number>,
      /** When they stopped, in seconds from the start of the load, the first 20. */
      clientFailureTimes: [] as number[],
      /** WebSocket upgrades answered with an HTTP status instead of 101, by status and error. */
      upgradesRefused: {} as Record<string, number>,
      /** Clients that went on over the HTTP fallback (after an upgrade refused by something). */
      httpFallbacks: 0,
    };

    const startClient = async (slot: Slot): Promise<void> => {
      const sockets: Sdk.SocketConnection[] = [];
      const factory: Sdk.SocketFactory = {
        canSetHeaders: true,
        connect(url, protocol, headers, handlers) {
          const socket = sdk.nodeSocketFactory.connect(url, protocol, headers, {
            ...handlers,
            refused: (status, error, retryAfterS) => {
              const key = `${status}${error ? ` ${error}` : ''}`;
              counters.upgradesRefused[key] = (counters.upgradesRefused[key] ?? 0) + 1;
              handlers.refused(status, error, retryAfterS);
            },
          });
          sockets.push(socket);
          if (sockets.length > 4) {
            sockets.shift();
          }
          return socket;
        },
      };
      const client = new sdk.FramegateClient({
        url: cluster.url,
        token: hsToken({ sub: `soak-${slot.index}`, channel: CHANNEL, scope: 'stream:publish' }),
        socket: factory,
        // The SDK's delays (0.5 s doubling to 15 s, jittered): shorter ones made every client of
        // a dead node retry several times a second, a storm of its own. It never gives up here.
        reconnect: { maxAttempts: 1_000 },
      });
      slot.client = client;
      slot.sockets = sockets;
      client.on('reconnecting', (r) => {
        counters.reconnects++;
        counters.reconnectCauses[r.cause] = (counters.reconnectCauses[r.cause] ?? 0) + 1;
      });
      client.on('serverError', (e) => {
        counters.serverErrors[e.code] = (counters.serverErrors[e.code] ?? 0) + 1;
      });
      client.on('transport', (kind) => {
        if (kind === 'http') {
          counters.httpFallbacks++;
        }
      });
      client.on('error', (err) => {
        const cause = describe(err);
        counters.clientFailures[cause] = (counters.clientFailures[cause] ?? 0) + 1;
        if (counters.clientFailureTimes.length < 20) {
          counters.clientFailureTimes.push(round((performance.now() - loadStart) / 1000, 1));
        }
      });
      client.on('badFrame', (refusal) => {
        if (counters.badFrameSamples.length < 5) {
          counters.badFrameSamples.push(
            `slot ${slot.index} seq ${refusal.seq}: ${refusal.message}`,
          );
        }
      });
      const opened = await client.open({
        params: { bench: 'soak', slot: slot.index },
        video: slot.media.openVideo,
      });
      const track: SessionTrack = {
        id: opened.sessionId,
        slot: slot.index,
        sent: 0,
        keyAt: 0,
        acked: 0,
        resumes: 0,
        ended: null,
        closedFrames: null,
        recordingStatus: null,
      };
      sessions.set(track.id, track);
      slot.session = track;
      // The next frame starts again from the stream's key frame.
      client.on('keyframe', () => {
        track.keyAt = track.sent;
      });
      client.on('ack', (seq) => {
        track.acked = Math.max(track.acked, seq);
      });
      // Listened to after the first `opened`: every later one is a resume.
      client.on('opened', () => {
        track.resumes++;
      });
    };

    // Ramp: the clients start spread over BENCH_SOAK_RAMP_S.
    progress(`ramp: ${settings.connections} clients over ${settings.rampS} s`);
    const intervalMs = 1000 / settings.fps;
    const loadStart = performance.now();
    for (let i = 0; i < settings.connections; i++) {
      slots.push({
        index: i,
        media: mediaOf(i),
        client: null,
        sockets: [],
        session: null,
        nextDue: loadStart + (i / settings.connections) * settings.rampS * 1000,
        sending: false,
      });
    }

    let running = true;
    const sendFrame = async (slot: Slot, now: number): Promise<void> => {
      slot.sending = true;
      try {
        if (!slot.client) {
          await startClient(slot);
        }
        const track = slot.session as SessionTrack;
        const client = slot.client as Sdk.FramegateClient;
        const n = track.sent;
        // A key frame every KEY_EVERY frames, as a browser encoder sends one every 0.8 × the
        // server's key frame interval: the stream's first chunks, from its key frame, in a loop.
        const chunk =
          slot.media.chunks[(n - track.keyAt) % Math.min(KEY_EVERY, slot.media.chunks.length)];
        track.sent++;
        await client.send(chunk.data, sdk.Track.Video, Math.round(n * intervalMs), chunk.key);
      } catch {
        if (!slot.client || slot.session === null) {
          counters.openErrors++;
          slot.client = null;
        } else {
          counters.sendErrors++;
        }
      } finally {
        slot.sending = false;
        slot.nextDue = Math.max(slot.nextDue + intervalMs, now);
      }
    };
    const sender = setInterval(() => {
      const now = performance.now();
      for (const slot of slots) {
        if (running && !slot.sending && slot.nextDue <= now) {
          void sendFrame(slot, now);
        }
      }
    }, 10);

    // Kills.
    const killEveryMs = settings.killsPerMin > 0 ? 60_000 / settings.killsPerMin : 2 ** 31 - 1;
    const killer = setInterval(() => {
      const live = slots.filter((s) => s.client && s.session && !s.sending);
      const slot = live[Math.floor(Math.random() * live.length)];
      if (!slot) {
        return;
      }
      if (Math.random() < 0.5) {
        counters.networkCuts++;
        slot.sockets.at(-1)?.terminate();
      } else {
        counters.clientDeaths++;
        const client = slot.client as Sdk.FramegateClient;
        (slot.session as SessionTrack).ended = 'stopped';
        slot.client = null;
        slot.session = null;
        void client.stop();
      }
    }, killEveryMs);

    // Samples, and the node restart.
    const samples: Record<string, Array<{ rssMB: number; cpuPct: number }>> = {};
    const restartAtMs = settings.rampS * 1000 + settings.seconds * 1000 * settings.restartAt;
    let restart: Record<string, unknown> | null = null;
    const victim = cluster.nodes[1];
    let lastCpu = new Map(cluster.nodes.map((n) => [n.id, nodeCpuMs(n.service.child.pid)]));
    let lastAt = performance.now();
    const endAt = loadStart + (settings.rampS + settings.seconds) * 1000;
    while (performance.now() < endAt) {
      await sleep(settings.sampleMs);
      const now = performance.now();
      for (const node of cluster.nodes) {
        const pid = node.service.child.pid;
        if (node.service.child.exitCode !== null || pid === undefined) {
          continue;
        }
        const cpu = nodeCpuMs(pid);
        const before = lastCpu.get(node.id) ?? cpu;
        (samples[node.id] ??= []).push({
          rssMB: rssMB(pid),
          cpuPct: round(((cpu - before) / (now - lastAt)) * 100, 1),
        });
        lastCpu.set(node.id, cpu);
      }
      lastAt = now;
      if (!restart && now - loadStart >= restartAtMs && victim) {
        const pid = victim.service.child.pid as number;
        const children = ffmpegProcesses(cluster.dir).filter((p) => p.ppid === pid).length;
        progress(`kill -9 ${victim.id} (pid ${pid}, ${children} ffmpeg children)`);
        process.kill(pid, 'SIGKILL');
        await victim.service.exit();
        logs.push([`${victim.id}-1`, victim.service.stdout]);
        await sleep(settings.restartDownS * 1000);
        const orphansAfterDown = ffmpegProcesses(cluster.dir).filter((p) => p.ppid === 1).length;
        await cluster.startNode(1);
        lastCpu = new Map(cluster.nodes.map((n) => [n.id, nodeCpuMs(n.service.child.pid)]));
        restart = {
          node: victim.id,
          atS: round((now - loadStart) / 1000, 1),
          ffmpegChildrenAtKill: children,
          orphanedFfmpegAfterDown: orphansAfterDown,
        };
        progress(`${victim.id} restarted (${JSON.stringify(restart)})`);
      }
      const liveCount = slots.filter((s) => s.client).length;
      progress(
        `t=${Math.round((now - loadStart) / 1000)} s: ${liveCount} clients, ${sessions.size} sessions, ` +
          `cuts ${counters.networkCuts}, deaths ${counters.clientDeaths}, reconnects ${counters.reconnects}`,
      );
    }
    running = false;
    clearInterval(sender);
    clearInterval(killer);

    progress('closing every client');
    await Promise.all(
      slots.map(async (slot) => {
        const client = slot.client;
        const track = slot.session;
        if (!client || !track) {
          return;
        }
        while (slot.sending) {
          await sleep(20);
        }
        try {
          const closed = await withTimeout(client.close(), 60_000);
          track.ended = 'closed';
          track.closedFrames = closed.frames;
          track.recordingStatus = closed.recording?.status ?? null;
        } catch (err) {
          track.ended = 'stopped';
          progress(`  close of ${track.id} failed: ${describe(err)}`);
          await client.stop();
        }
      }),
    );

    progress('waiting for abandoned sessions to be finalized');
    const settleDeadline = performance.now() + settings.resumeWindowMs + 120_000;
    let unsettled = -1;
    while (performance.now() < settleDeadline) {
      const rows = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM sessions s LEFT JOIN recordings r ON r.session_id = s.id
          WHERE s.id = ANY($1::uuid[])
            AND (s.status IN ('open', 'interrupted') OR r.status IS DISTINCT FROM 'ready')`,
        [[...sessions.keys()]],
      );
      unsettled = rows.rows[0]?.n ?? 0;
      if (unsettled === 0) {
        break;
      }
      await sleep(2_000);
    }

    progress('checking spools, rows, recordings, leases and processes');
    const check = await verify(cluster, pool, sessions, ffprobePath, admin);
    // The nodes' logs, for reading what the figures do not say (which node refused what, and why).
    const logDir = join(dataDir, 'soak-logs');
    mkdirSync(logDir, { recursive: true });
    for (const [name, text] of [...logs, ...cluster.nodes.map((n) => [n.id, n.service.stdout])]) {
      writeFileSync(join(logDir, `${name}.log`), text);
    }
    progress(`node logs in ${logDir}`);
    const result = {
      bench: 'soak',
      date: new Date().toISOString(),
      machine: { nproc: 2, cpuModel: cpuModel(), memoryGB: memoryGB(), node: process.version },
      source: sourceState(),
      settings,
      load: {
        clients: settings.connections,
        sessions: sessions.size,
        framesSent: [...sessions.values()].reduce((a, s) => a + s.sent, 0),
        framesAcked: [...sessions.values()].reduce((a, s) => a + s.acked, 0),
        ...counters,
        resumedSessions: [...sessions.values()].filter((s) => s.resumes > 0).length,
      },
      restart,
      nodes: Object.fromEntries(
        cluster.nodes.map((n) => [
          n.id,
          {
            idle: idle[n.id],
            underLoad: summarize(samples[n.id] ?? []),
          },
        ]),
      ),
      unsettledSessions: unsettled,
      check,
      durationSeconds: round((performance.now() - started) / 1000, 1),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await cleanup.run();
  }
}

async function verify(
  cluster: Cluster,
  pool: Pool,
  sessions: Map<string, SessionTrack>,
  ffprobePath: string,
  admin: string,
): Promise<Record<string, unknown>> {
  const rows = await pool.query<{
    id: string;
    status: string;
    video_frames: string;
    rejected_frames: string;
    last_seq: string;
    recording_status: string | null;
    path: string | null;
  }>(
    `SELECT s.id, s.status, s.video_frames, s.rejected_frames, s.last_seq, r.status AS recording_status, r.path
       FROM sessions s LEFT JOIN recordings r ON r.session_id = s.id
      WHERE s.id = ANY($1::uuid[])`,
    [[...sessions.keys()]],
  );
  let lostAcked = 0;
  let sessionsLosingAcked = 0;
  let spoolNotContiguous = 0;
  let rowCountsOff = 0;
  let closedFramesOff = 0;
  let notReady = 0;
  let missingSpools = 0;
  const probes: Array<{ id: string; spool: number; probed: number }> = [];
  for (const row of rows.rows) {
    const track = sessions.get(row.id) as SessionTrack;
    let summary;
    try {
      summary = await scanSpool(join(cluster.spoolDir, `${row.id}.spool`));
    } catch {
      missingSpools++;
      continue;
    }
    if (summary.records !== summary.lastSeq) {
      spoolNotContiguous++;
    }
    if (track.acked > summary.lastSeq) {
      lostAcked += track.acked - summary.lastSeq;
      sessionsLosingAcked++;
    }
    const rejected = Number(row.rejected_frames);
    if (
      Number(row.video_frames) + rejected !== summary.records ||
      Number(row.last_seq) !== summary.lastSeq
    ) {
      rowCountsOff++;
    }
    if (track.closedFrames !== null && track.closedFrames !== summary.records) {
      closedFramesOff++;
    }
    if (row.recording_status !== 'ready') {
      notReady++;
    } else if (row.path && probes.length < settings.probeSample) {
      probes.push({
        id: row.id,
        spool: summary.records,
        probed: probeFrames(ffprobePath, row.path),
      });
    }
  }
  const leases = await pool
    .query<{ n: number }>(
      `SELECT CASE WHEN to_regclass('connection_leases') IS NULL THEN -1
              ELSE (SELECT count(*)::int FROM connection_leases) END AS n`,
    )
    .catch(() => ({ rows: [{ n: -1 }] }));
  const slotsByNode: Record<string, unknown> = {};
  for (const node of cluster.nodes) {
    const res = await fetch(`${node.url}/v1/admin/stats`, {
      headers: { authorization: `Bearer ${admin}` },
    }).catch(() => null);
    const stats = res?.ok ? ((await res.json()) as { connections: number; slots: unknown }) : null;
    slotsByNode[node.id] = stats ? { connections: stats.connections, slots: stats.slots } : null;
  }
  return {
    sessionsChecked: rows.rows.length,
    sessionsMissingRows: sessions.size - rows.rows.length,
    lostAcknowledgedFrames: lostAcked,
    sessionsLosingAcknowledgedFrames: sessionsLosingAcked,
    spoolsNotSeq1ToN: spoolNotContiguous,
    missingSpools,
    rowCountsDisagreeingWithSpool: rowCountsOff,
    closedFramesDisagreeingWithSpool: closedFramesOff,
    recordingsNotReady: notReady,
    probed: probes.length,
    probedFrameCountsOff: probes.filter((p) => p.probed !== p.spool).length,
    probeMismatches: probes.filter((p) => p.probed !== p.spool).slice(0, 5),
    leasesLeft: leases.rows[0]?.n ?? -1,
    ffmpegProcessesLeft: ffmpegProcesses(cluster.dir).length,
    slotsByNode,
  };
}

function probeFrames(ffprobePath: string, path: string): number {
  try {
    const out = execFileSync(
      ffprobePath,
      [
        '-v',
        'error',
        '-select_streams',
        'v:0',
        '-count_packets',
        '-show_entries',
        'stream=nb_read_packets',
        '-of',
        'csv=p=0',
        path,
      ],
      { encoding: 'utf8' },
    );
    return Number(out.trim());
  } catch {
    return -1;
  }
}

/** ffmpeg processes whose command line names a path under `dir` (this run's). */
function ffmpegProcesses(dir: string): Array<{ pid: number; ppid: number }> {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' });
  const found: Array<{ pid: number; ppid: number }> = [];
  for (const line of out.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (m && /ffmpeg|ffprobe/.test(m[3].split(' ')[0] ?? '') && m[3].includes(resolve(dir))) {
      found.push({ pid: Number(m[1]), ppid: Number(m[2]) });
    }
  }
  return found;
}

function rssMB(pid: number): number {
  return round(rssOf(pid) / (1024 * 1024), 1);
}

function nodeCpuMs(pid: number | undefined): number {
  return pid === undefined ? 0 : treeCpuMs(pid);
}

async function sampleNodes(
  cluster: Cluster,
  ms: number,
): Promise<Record<string, { rssMB: number; cpuPct: number }>> {
  const before = new Map(cluster.nodes.map((n) => [n.id, nodeCpuMs(n.service.child.pid)]));
  const t0 = performance.now();
  await sleep(ms);
  const elapsed = performance.now() - t0;
  return Object.fromEntries(
    cluster.nodes.map((n) => [
      n.id,
      {
        rssMB: rssMB(n.service.child.pid as number),
        cpuPct: round(
          ((nodeCpuMs(n.service.child.pid) - (before.get(n.id) ?? 0)) / elapsed) * 100,
          1,
        ),
      },
    ]),
  );
}

function summarize(samples: Array<{ rssMB: number; cpuPct: number }>): Record<string, number> {
  if (samples.length === 0) {
    return {};
  }
  const rss = samples.map((s) => s.rssMB);
  const cpu = samples.map((s) => s.cpuPct);
  return {
    samples: samples.length,
    rssMBFirst: rss[0],
    rssMBMax: Math.max(...rss),
    rssMBLast: rss.at(-1) as number,
    cpuPctMean: round(cpu.reduce((a, b) => a + b, 0) / cpu.length, 1),
    cpuPctMax: Math.max(...cpu),
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolvePromise(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:soak failed: ${describe(err)}\n`);
  process.exitCode = 1;
});
