import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import type { Repository } from 'typeorm';
import { AuditWriter } from '../audit/audit-writer.service';
import type { Principal } from '../auth/scopes';
import { ClusterBus } from '../cluster/cluster-bus.service';
import { Membership } from '../cluster/membership.service';
import { AppError } from '../common/app-error';
import { ErrorCode } from '../common/error-code';
import { APP_CONFIG, type AppConfig, spoolDirOf } from '../config/config';
import { RecordingService } from '../media/recording.service';
import { NodeMetrics } from '../metrics/node-metrics.service';
import type { OpenSession, Opened } from '../protocol/open-session.schema';
import { type SessionCounts, SessionStore } from '../sessions/session-store.service';
import type { VideoSettings } from '../sessions/session.types';
import { SessionEntity } from '../sessions/session.entity';
import { buildOpened, SessionsService } from '../sessions/sessions.service';
import {
  type IngestTotals,
  SessionRuntime,
  type RuntimeDeps,
  type SessionSink,
  storedIn,
} from './session-runtime';
import { FreeSpace } from '../spool/free-space';
import type { Demand } from './capacity';
import type { CapacityClaim } from './capacity.service';
import { CapacityService } from './capacity.service';
import { chunkGateFor, describeMedia, negotiateMedia } from './media-policy';
import { QuotaService } from './quota.service';
import { PASSTHROUGH_FRAME_WEIGHT } from '../media/session-recorder';
import { scanSpool, spoolFileOf, type SpoolSummary, SpoolWriter } from '../spool/spool';

/** Retry-After while free disk space is below HEALTH_MIN_FREE_DISK_MB. */
const LOW_DISK_RETRY_S = 30;

/** How often the sweeper looks for idle HTTP-attached and expired interrupted sessions. */
const SWEEP_MS = 1_000;

/** The bus request by which a node asks a session's owner to let go of it. */
export const TAKEOVER = 'session.takeover';

/** Retry-After when the owner of a session did not let go of it in time. */
const BUSY_RETRY_S = 1;

/**
 * Attempts to take a session whose owner changes under us (two nodes racing for it): each loses
 * to a node that then owns it, and the next attempt asks that node.
 */
const TAKE_ATTEMPTS = 3;

/** Retry-After of a resume refused while the node rebuilds as many sessions as it may at once. */
const REHYDRATE_RETRY_S = 1;

/** Sessions (and ended sessions' recordings) of dead nodes adopted per sweep, at most. */
const ADOPT_PER_SWEEP = 100;

const SESSION_ID = /^[0-9a-f-]{36}$/i;

/**
 * The live sessions of this node. Opens, resumes (rehydrating from the spool a session this node
 * owned before a restart, or one it takes from another node), ends, and writes their counters in
 * batches.
 *
 * A session belongs to the node named in its row (`sessions.node`), while that node's heartbeat
 * lives (docs/operations/scale-out.md, "Sessions and resume on any node"). Only the owner writes
 * its spool. A resume elsewhere moves it: a live owner is asked over the bus to let go (it closes
 * its transport with 4009, closes the spool, stops the recorder, and hands the row over under the
 * session's lock); a dead owner's session is taken in one conditional UPDATE. A node whose own
 * heartbeat lapses lets go of everything before the others can count it dead.
 */
@Injectable()
export class SessionRegistry implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(SessionRegistry.name);
  private readonly live = new Map<string, SessionRuntime>();
  /** Frames, bytes and acks of every session since this process started. */
  readonly totals: IngestTotals;
  /** Per-session lock: attaches and ends of one session run one at a time. */
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly spoolDir: string;
  private readonly deps: RuntimeDeps;
  private statsTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private statsWrite: Promise<void> = Promise.resolve();
  private sweeping = false;
  /** Sessions whose recording is being finalized from the spool right now. */
  private readonly finalizing = new Set<string>();
  /** Rehydrations running now (see `rehydrate`), at most `maxRehydrating`. */
  private rehydrating = 0;
  private readonly maxRehydrating: number;
  /**
   * Each attached session's share of the recording capacity. A session without a transport sends
   * nothing: its claim goes back until it resumes, so dropped clients do not keep others out.
   */
  private readonly claims = new Map<string, CapacityClaim>();
  /** What each live session declared (its frame rate and recording size), for its claims. */
  private readonly demands = new Map<string, Demand>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly sessions: SessionsService,
    private readonly store: SessionStore,
    audit: AuditWriter,
    @InjectRepository(SessionEntity) private readonly rows: Repository<SessionEntity>,
    private readonly recordings: RecordingService,
    private readonly freeSpace: FreeSpace,
    private readonly capacity: CapacityService,
    metrics: NodeMetrics,
    private readonly quotas: QuotaService,
    private readonly membership: Membership,
    private readonly bus: ClusterBus,
  ) {
    this.totals = {
      frames: 0,
      bytes: 0,
      acks: 0,
      ackLatency: metrics.ackLatency,
      spoolSync: metrics.spoolSync,
    };
    sessions.useLiveCounts((id) => this.live.get(id)?.counts);
    this.spoolDir = spoolDirOf(config);
    mkdirSync(this.spoolDir, { recursive: true });
    this.maxRehydrating = Math.max(2, Math.floor(config.DB_POOL_MAX / 2));
    this.deps = {
      totals: this.totals,
      config,
      store,
      audit,
      logger: this.logger,
      onEnded: (runtime) => {
        if (this.live.get(runtime.id) === runtime) {
          this.live.delete(runtime.id);
          this.releaseClaim(runtime.id);
          this.demands.delete(runtime.id);
        }
      },
      leaseHeld: () => this.alone || this.membership.healthy,
      leaseLost: () => this.fence(),
      onWindowPassed: (runtime) =>
        void this.withLock(runtime.id, () => runtime.abandon()).catch((err: unknown) =>
          // The sweeper finds the session again (still interrupted, window passed) and retries.
          this.logger.warn({ err, sessionId: runtime.id }, 'abandoning a session failed'),
        ),
    };
    capacity.onCapsChanged(() => {
      for (const [id, claim] of this.claims) {
        this.live.get(id)?.limitFps('capacity', claim.cap);
      }
    });
    bus.on(TAKEOVER, (body, from) => this.letGo(String(body.sessionId), from));
    membership.onLapse(() => this.fence());
  }

  /**
   * With the embedded Postgres no other node shares the database, so none can take a session
   * over: a lapse there is a database outage, during which open streams go on (docs/operations).
   */
  private get alone(): boolean {
    return this.config.DATABASE_URL === undefined;
  }

  async onApplicationBootstrap(): Promise<void> {
    const orphans = await this.store.interruptOrphans(this.config.NODE_ID);
    if (orphans.length > 0) {
      this.logger.log(
        { sessions: orphans.length },
        'sessions left open by a previous run are interrupted',
      );
    }
    this.statsTimer = setInterval(() => void this.flushStats(), this.config.SESSION_STATS_FLUSH_MS);
    this.statsTimer.unref();
    this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
    // Owned here: a node stopped right after it started closes the database under these queries,
    // and an unhandled rejection would end the process mid-drain. The next start looks again.
    void this.reconcileOrphans(orphans)
      .then(() => this.recoverRecordings())
      .catch((err: unknown) =>
        this.logger.warn({ err }, 'recovery of recordings deferred to the next start'),
      );
  }

  /**
   * After the drain, no transport is attached; what is left are interrupted sessions: their spools
   * are closed and encoders stopped (a restart rebuilds their recordings from the spools).
   */
  async onModuleDestroy(): Promise<void> {
    clearInterval(this.statsTimer);
    clearInterval(this.sweepTimer);
    await Promise.all([...this.live.values()].map((runtime) => runtime.release()));
    this.live.clear();
    for (const claim of this.claims.values()) {
      claim.release();
    }
    this.claims.clear();
    this.demands.clear();
  }

  get size(): number {
    return this.live.size;
  }

  get(sessionId: string): SessionRuntime | undefined {
    return this.live.get(sessionId);
  }

  runtimes(): IterableIterator<SessionRuntime> {
    return this.live.values();
  }

  spoolPath(sessionId: string): string {
    return spoolFileOf(this.spoolDir, sessionId);
  }

  /** Creates a session (row + spool) attached to `sink`, and returns `opened`. */
  async open(owner: Principal, body: OpenSession, sink: SessionSink): Promise<Opened> {
    this.assertLeaseHeld();
    await this.assertDiskSpace();
    const demand = this.demandOf(body.video, body.recording ?? null);
    const claim = this.capacity.admit(demand);
    let created: { runtime: SessionRuntime; opened: Opened };
    try {
      created = await this.create(owner, body);
    } catch (err) {
      claim.release();
      throw err;
    }
    const { runtime } = created;
    this.live.set(runtime.id, runtime);
    this.demands.set(runtime.id, demand);
    this.claims.set(runtime.id, claim);
    runtime.limitFps('capacity', claim.cap);
    await runtime.attach(sink, 'opened');
    return created.opened;
  }

  /** The row, spool and recorder of a new session. */
  private async create(
    owner: Principal,
    body: OpenSession,
  ): Promise<{ runtime: SessionRuntime; opened: Opened }> {
    const media = negotiateMedia(
      body.video,
      body.audio ?? null,
      body.recording ?? null,
      this.quotas.mediaPolicyFor(owner.channel),
    );
    const gate = chunkGateFor(body.video, body.audio ?? null, media, null);
    const created = await this.sessions.create(owner, body, media);
    const spool = await SpoolWriter.open(this.spoolPath(created.opened.sessionId));
    const runtime = new SessionRuntime(
      this.deps,
      {
        id: created.opened.sessionId,
        subject: owner.subject,
        channel: owner.channel,
        resumeTokenHash: created.resumeTokenHash,
        status: 'open',
        lastSeq: 0,
        stored: { video: 0, audio: 0, bytes: 0 },
        highestPts: 0,
        interruptedAt: null,
        mediaOrigin: null,
        media,
        video: body.video,
        audio: body.audio ?? null,
        gate,
      },
      spool,
    );
    runtime.setRecording(
      await this.recordings.begin(
        {
          id: runtime.id,
          video: body.video,
          audio: body.audio ?? null,
          recordingSettings: body.recording ?? null,
        },
        this.spoolPath(runtime.id),
        runtime.recorderEvents,
        false,
      ),
    );
    return { runtime, opened: created.opened };
  }

  /**
   * A session's claim on the recording capacity: the frame rate it declared (RECORDING_FPS, the
   * rate its recording assumes, when it declared none) at its recording's size.
   */
  private demandOf(
    video: VideoSettings,
    recordingSettings: SessionEntity['recordingSettings'],
  ): Demand {
    const compressed = (video.codec ?? 'jpeg') !== 'jpeg';
    return {
      fps: video.fps ?? this.config.RECORDING_FPS,
      // Compressed video is muxed as sent: no decode, no x264, whatever its size.
      weight: compressed
        ? PASSTHROUGH_FRAME_WEIGHT
        : this.capacity.weightOf(this.recordings.outputSize({ recordingSettings })),
    };
  }

  /**
   * Continues a session on `sink` (spec section 5). Only its owner with its resume token, within
   * the window; anything else is `unknown_session` (4004), without saying which check failed.
   */
  resume(
    principal: Principal,
    sessionId: string,
    resumeToken: string,
    sink: SessionSink,
  ): Promise<Opened> {
    return this.withLock(sessionId, async () => {
      this.assertLeaseHeld();
      await this.assertDiskSpace();
      const runtime = await this.runtimeFor(principal, sessionId, resumeToken);
      this.claimFor(runtime);
      const lastSeq = await runtime.attach(sink, `resumed_${sink.transport}`);
      runtime.media = describeMedia(
        runtime.video,
        runtime.audio,
        this.quotas.mediaPolicyFor(runtime.channel),
      );
      return buildOpened(this.config, sessionId, resumeToken, lastSeq, runtime.media);
    });
  }

  /** The runtime of a session for an HTTP fallback call, attaching the HTTP transport to it. */
  forHttp(
    principal: Principal,
    sessionId: string,
    resumeToken: string,
    sink: SessionSink,
  ): Promise<SessionRuntime> {
    return this.withLock(sessionId, async () => {
      this.assertLeaseHeld();
      const runtime = await this.runtimeFor(principal, sessionId, resumeToken);
      if (runtime.attached !== sink) {
        this.claimFor(runtime);
        await runtime.attach(sink, 'resumed_http');
        runtime.resumedOn(sink);
      }
      runtime.lastActivityAt = Date.now();
      return runtime;
    });
  }

  /** Ends a session normally. */
  closeSession(
    runtime: SessionRuntime,
    cause: string,
  ): Promise<Awaited<ReturnType<SessionRuntime['close']>>> {
    return this.withLock(runtime.id, () => runtime.close(cause));
  }

  /** A transport went away: interrupted, resume window starts. */
  detach(runtime: SessionRuntime, sink: SessionSink, cause: string): Promise<void> {
    return this.withLock(runtime.id, async () => {
      await runtime.detach(sink, cause);
      // A runtime handed off meanwhile has given its claim back; a newer one keeps its own.
      if (runtime.attached === null && this.live.get(runtime.id) === runtime) {
        this.releaseClaim(runtime.id);
      }
    });
  }

  /**
   * A session coming back (resume, HTTP fallback) claims its share again: never refused, it was
   * admitted when it opened, but capped like the others when the node is full.
   */
  private claimFor(runtime: SessionRuntime): void {
    const demand = this.demands.get(runtime.id);
    if (demand && !this.claims.has(runtime.id)) {
      const claim = this.capacity.readmit(demand);
      this.claims.set(runtime.id, claim);
      runtime.limitFps('capacity', claim.cap);
    }
  }

  private releaseClaim(sessionId: string): void {
    this.claims.get(sessionId)?.release();
    this.claims.delete(sessionId);
  }

  /**
   * Writes the counters of every session that changed since the last write, in one statement.
   * Resolves with the number of sessions whose counters could not be written (they stay dirty).
   */
  flushStats(): Promise<number> {
    const write = this.statsWrite.then(async () => {
      const rows = [];
      for (const runtime of this.live.values()) {
        const stats = runtime.takeStats();
        if (stats) {
          rows.push(stats);
        }
      }
      try {
        // Not over a session that has ended meanwhile: its end wrote the final counters, and a
        // flush taken before it would put older ones back.
        await this.store.saveStats(rows, ['open', 'interrupted'], this.config.NODE_ID);
        return 0;
      } catch (err) {
        this.logger.warn({ err }, 'session counters not saved; retrying on the next flush');
        for (const row of rows) {
          this.live.get(row.id)?.statsNotSaved();
        }
        return rows.length;
      }
    });
    this.statsWrite = write.then(() => undefined);
    return write;
  }

  private async runtimeFor(
    principal: Principal,
    sessionId: string,
    resumeToken: string,
  ): Promise<SessionRuntime> {
    const unknown = new AppError(
      ErrorCode.UnknownSession,
      'unknown session, bad resume token, or resume window passed',
    );
    const known = this.live.get(sessionId);
    if (known?.failing) {
      // Its spool just failed; it leaves `live` once the final ack is out. Resume after that.
      throw new AppError(ErrorCode.Unavailable, 'the session is being stopped; resume again', {
        retryAfterS: 1,
      });
    }
    const runtime = known ?? (await this.rehydrateBounded(sessionId, principal, resumeToken));
    if (
      !runtime ||
      runtime.subject !== principal.subject ||
      !tokenMatches(resumeToken, runtime.resumeTokenHash)
    ) {
      throw unknown;
    }
    if (runtime.status !== 'open' && runtime.status !== 'interrupted') {
      throw unknown;
    }
    return runtime;
  }

  /**
   * At most half the database pool rebuilds sessions at once. A node's death sends all its clients
   * to the others together, and each rebuild costs a dozen statements and a read of its spool: in
   * bench:soak (2026-12-03) 700 at once held every pooled connection, so acks, audits and quota
   * checks timed out and the nodes refused everything. Past the bound a resume is refused at once,
   * before any statement (503 / 1013 `over_capacity`, Retry-After), and the client's next try,
   * through the load balancer, may reach a node with room.
   */
  private async rehydrateBounded(
    sessionId: string,
    principal: Principal,
    resumeToken: string,
  ): Promise<SessionRuntime | null> {
    if (this.rehydrating >= this.maxRehydrating) {
      throw new AppError(
        ErrorCode.OverCapacity,
        'this node is taking back as many sessions as it can; resume again shortly',
        { retryAfterS: REHYDRATE_RETRY_S },
      );
    }
    this.rehydrating++;
    try {
      return await this.rehydrate(sessionId, principal, resumeToken);
    } finally {
      this.rehydrating--;
    }
  }

  /**
   * A session with no runtime here: one this node owned before it restarted, or one it takes from
   * another node (see `acquire`). Its frames are in the spool (on the shared volume when there are
   * several nodes), so it can go on within its window. The spool, not the database, says what was
   * stored. Null when the session cannot be resumed by this principal with this token.
   */
  private async rehydrate(
    sessionId: string,
    principal: Principal,
    resumeToken: string,
  ): Promise<SessionRuntime | null> {
    if (!SESSION_ID.test(sessionId)) {
      return null;
    }
    const found = await this.rows.findOneBy({ id: sessionId });
    // Checked before anything moves: a wrong token must not make an owner let go.
    if (
      !found ||
      !this.resumable(found) ||
      found.subject !== principal.subject ||
      !tokenMatches(resumeToken, found.resumeTokenHash)
    ) {
      return null;
    }
    const row = await this.acquire(found);
    if (!row) {
      return null;
    }
    const interruptedAt = row.status === 'interrupted' ? row.interruptedAt : new Date();
    const path = this.spoolPath(sessionId);
    if (!existsSync(path)) {
      return null;
    }
    const spool = await SpoolWriter.open(path);
    if (row.status === 'open') {
      // Left open by a process that died (this node's, or another whose session came here).
      const cause = found.node === this.config.NODE_ID ? 'spool_failure' : 'node_lost';
      await this.store.transition(sessionId, ['open'], 'interrupted', cause);
    }
    const media = describeMedia(row.video, row.audio, this.quotas.mediaPolicyFor(row.channel));
    const stored = storedIn(spool.recovered);
    const runtime = new SessionRuntime(
      this.deps,
      {
        id: row.id,
        subject: row.subject,
        channel: row.channel,
        resumeTokenHash: row.resumeTokenHash,
        status: 'interrupted',
        lastSeq: spool.recovered.lastSeq,
        stored,
        highestPts: spool.recovered.highestPts,
        interruptedAt,
        mediaOrigin: row.mediaOriginAt,
        media,
        video: row.video,
        audio: row.audio,
        gate: chunkGateFor(row.video, row.audio, media, {
          storedVideo: stored.video,
          highestPts: spool.recovered.highestPts,
        }),
      },
      spool,
    );
    // The encoder is rebuilt from the spool: the partial MP4 of the dead process is replaced.
    runtime.setRecording(await this.recordings.begin(row, path, runtime.recorderEvents, true));
    this.live.set(sessionId, runtime);
    // Admitted by the process that opened it: it claims its share when it attaches.
    this.demands.set(sessionId, this.demandOf(row.video, row.recordingSettings));
    return runtime;
  }

  /** Open or interrupted, and (if interrupted) within its resume window. */
  private resumable(row: SessionEntity): boolean {
    if (row.status === 'open') {
      return true;
    }
    return (
      row.status === 'interrupted' &&
      (row.interruptedAt === null ||
        row.interruptedAt.getTime() + this.config.RESUME_WINDOW_MS >= Date.now())
    );
  }

  /**
   * Makes this node the owner of `row`'s session and resolves with its row as now stored, or null
   * once it can no longer be resumed. A dead owner's session is taken in one conditional UPDATE
   * (of several nodes racing, one wins); a live owner is asked to let go, and one that does not
   * answer in time keeps it: the client is told to try again (503 / 1013), so there is never a
   * second writer on the spool. A lost race is tried again against the winner.
   */
  private async acquire(row: SessionEntity): Promise<SessionEntity | null> {
    const me = this.config.NODE_ID;
    let current: SessionEntity | null = row;
    for (let attempt = 0; attempt < TAKE_ATTEMPTS; attempt++) {
      if (!current || !this.resumable(current)) {
        return null;
      }
      if (current.node === me) {
        return current;
      }
      const owner = current.node;
      const taken = await this.store.takeFromDead(
        current.id,
        owner,
        me,
        this.config.NODE_DEAD_AFTER_MS,
      );
      if (!taken) {
        const answer = await this.bus.request(owner, TAKEOVER, { sessionId: current.id });
        if (!answer.delivered) {
          this.logger.warn(
            { sessionId: current.id, owner, reason: answer.reason, message: answer.message },
            'the owner of a session did not let go of it',
          );
          throw busyError();
        }
      }
      current = await this.rows.findOneBy({ id: row.id });
    }
    if (current?.node === me) {
      return this.resumable(current) ? current : null;
    }
    throw busyError();
  }

  /**
   * Another node takes over a session this node owns (TAKEOVER): under the session's lock, so no
   * resume or end here interleaves, its runtime (if any) hands off: transport closed with 4009,
   * spool closed, recorder stopped. Then the row goes to `to`. Answers whether it moved; when it
   * did not (the session ended, or is not this node's), the asker reads the row again.
   */
  private letGo(sessionId: string, to: string): Promise<{ moved: boolean }> {
    if (!SESSION_ID.test(sessionId)) {
      return Promise.resolve({ moved: false });
    }
    return this.withLock(sessionId, async () => {
      const runtime = this.live.get(sessionId);
      if (runtime) {
        await runtime.handOff((sink) => sink.replaced(), `taken_over_by_${to}`);
      }
      const moved = await this.store.handOver(sessionId, this.config.NODE_ID, to);
      if (moved) {
        this.logger.log({ sessionId, to }, 'session handed over to another node');
      }
      return { moved };
    });
  }

  /**
   * This node's heartbeat lapsed: the others may take its sessions from now on, so it stops
   * writing every one of them at once (1012: resume, on another node), before they can count it
   * dead (docs/operations/scale-out.md states what that relies on).
   */
  private fence(): void {
    if (this.alone) {
      return;
    }
    const runtimes = [...this.live.values()].filter((runtime) => !runtime.leaving);
    if (runtimes.length === 0) {
      return;
    }
    this.logger.error(
      { sessions: runtimes.length },
      'node lease lapsed: every session here is let go of',
    );
    const lapsed = new AppError(
      ErrorCode.Draining,
      'this node lost its lease; resume, on another node',
      { retryAfterS: BUSY_RETRY_S },
    );
    for (const runtime of runtimes) {
      // Not under the session's lock: the spool must stop now, not after a slow resume or close.
      void runtime.handOff((sink) => sink.failed(lapsed), 'node_lease_lapsed', true);
    }
  }

  /**
   * A node that lost its lease takes no session: what it opened or resumed could be taken by
   * another node at once, with this one still writing.
   */
  private assertLeaseHeld(): void {
    if (!this.alone && !this.membership.healthy) {
      throw new AppError(ErrorCode.Draining, 'this node lost its lease; try another node', {
        retryAfterS: BUSY_RETRY_S,
      });
    }
  }

  private async sweep(): Promise<void> {
    if (this.sweeping) {
      return;
    }
    this.sweeping = true;
    try {
      await this.sweepOnce();
    } finally {
      this.sweeping = false;
    }
  }

  private async sweepOnce(): Promise<void> {
    const idleBefore = Date.now() - this.config.HEARTBEAT_TIMEOUT_MS;
    for (const runtime of this.live.values()) {
      const sink = runtime.attached;
      if (sink?.transport === 'http' && runtime.lastActivityAt < idleBefore) {
        await this.detach(runtime, sink, 'http_idle').catch((err: unknown) =>
          this.logger.warn(
            { err, sessionId: runtime.id },
            'could not interrupt an idle HTTP session',
          ),
        );
      }
    }
    try {
      // A row left `open` with no runtime here (its runtime was dropped while the database could
      // not take its end) becomes interrupted, so its window runs and it is abandoned in turn.
      // Only rows unwritten for a window: a session being opened or rebuilt is younger.
      for (const id of await this.store.staleOpen(
        this.config.NODE_ID,
        this.config.RESUME_WINDOW_MS,
      )) {
        if (!this.live.has(id) && !this.locks.has(id)) {
          await this.store.transition(
            id,
            ['open'],
            'interrupted',
            'runtime_lost',
            new Date(),
            this.config.NODE_ID,
          );
        }
      }
      const expired = await this.store.expiredInterrupted(
        this.config.NODE_ID,
        this.config.RESUME_WINDOW_MS,
      );
      for (const id of expired) {
        if (
          !this.live.has(id) &&
          (await this.store.transition(
            id,
            ['interrupted'],
            'abandoned',
            'resume_window_passed',
            new Date(),
            this.config.NODE_ID,
          ))
        ) {
          await this.finalizeFromSpool(id, {
            status: 'abandoned',
            cause: 'resume_window_passed',
          }).catch((err: unknown) =>
            this.logger.warn({ err, sessionId: id }, 'recording of an abandoned session failed'),
          );
        }
      }
    } catch (err) {
      this.logger.debug({ err }, 'sweep of expired sessions deferred');
    }
    if (!this.alone && this.membership.healthy) {
      await this.adoptFromDeadNodes().catch((err: unknown) =>
        this.logger.debug({ err }, "adoption of dead nodes' sessions deferred"),
      );
    }
  }

  /**
   * Sessions a dead node left open or interrupted become this node's (interrupted, their window
   * counted from now: see `adoptOrphans`), so the sweep abandons them once it passes and
   * finalizes their recordings from the shared spool; a resume meanwhile takes them from here as
   * from any owner.
   * Ended sessions whose recordings a dead node left unfinished are finished here.
   */
  private async adoptFromDeadNodes(): Promise<void> {
    const deadAfter = this.config.NODE_DEAD_AFTER_MS;
    const me = this.config.NODE_ID;
    const adopted = await this.store.adoptOrphans(me, deadAfter, ADOPT_PER_SWEEP);
    if (adopted.length > 0) {
      this.logger.log({ sessions: adopted.length }, 'sessions of dead nodes adopted');
      await this.reconcileOrphans(adopted);
    }
    const unfinished = await this.store.adoptUnfinishedRecordings(me, deadAfter, ADOPT_PER_SWEEP);
    for (const id of unfinished) {
      await this.finalizeFromSpool(id).catch((err: unknown) =>
        this.logger.error({ err, sessionId: id }, "could not finish a dead node's recording"),
      );
    }
  }

  /**
   * Finalizes the recording of an ended session this node has no runtime for (abandoned while the
   * node was down, or a crash during finalizing): every frame in the spool goes into it, and the
   * row's counters, last flushed by the process that died, are replaced by what the spool holds.
   * `ended` names the transition just made, for the audit trail. Resolves with the counters, or
   * null when there is nothing to finalize here.
   */
  private async finalizeFromSpool(
    sessionId: string,
    ended?: { status: 'abandoned'; cause: string },
  ): Promise<SessionCounts | null> {
    const path = this.spoolPath(sessionId);
    if (this.finalizing.has(sessionId) || !existsSync(path)) {
      return null;
    }
    this.finalizing.add(sessionId);
    try {
      const row = await this.rows.findOneBy({ id: sessionId });
      if (!row) {
        return null;
      }
      const summary = await scanSpool(path);
      let rejected = 0;
      const handle = await this.recordings.begin(
        row,
        path,
        { onBadImage: () => rejected++, onRefused: () => rejected++, onBacklog: () => undefined },
        true,
      );
      let counts: SessionCounts | null = null;
      try {
        await handle.finish(summary.lastSeq);
      } finally {
        // Also when the recording fails (no video): the counters still say what was stored.
        counts = countsOf(summary, rejected);
        await this.store.saveStats([{ id: sessionId, ...counts }], undefined, this.config.NODE_ID);
        if (ended) {
          this.deps.audit.record({
            kind: 'session_event',
            id: randomUUID(),
            sessionId,
            at: new Date(),
            type: ended.status,
            connectionId: null,
            detail: {
              cause: ended.cause,
              frames: summary.records,
              ...counts,
            },
          });
        }
      }
      return counts;
    } finally {
      this.finalizing.delete(sessionId);
    }
  }

  /**
   * At start: the sessions a dead process left open keep their row counters from its last flush;
   * the spools say what was stored. Bad images are not known without decoding them again (the
   * recorder does that on resume or abandonment), so the row's count of them stands meanwhile.
   */
  private async reconcileOrphans(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      const path = this.spoolPath(id);
      if (this.live.has(id) || this.finalizing.has(id) || !existsSync(path)) {
        continue;
      }
      try {
        const [summary, row] = await Promise.all([scanSpool(path), this.rows.findOneBy({ id })]);
        if (!row || this.live.has(id)) {
          continue;
        }
        const rejected = Math.min(row.rejectedFrames, summary.records - summary.audioRecords);
        // Only while still interrupted: a sweep may have abandoned and recounted it meanwhile.
        await this.store.saveStats(
          [{ id, ...countsOf(summary, rejected) }],
          ['interrupted'],
          this.config.NODE_ID,
        );
      } catch (err) {
        this.logger.warn({ err, sessionId: id }, 'could not recount an interrupted session');
      }
    }
  }

  /**
   * At start: recordings left unfinished by a dead process for sessions that already ended, and
   * recordings that failed because the disk was full (their spools were kept for this).
   */
  private async recoverRecordings(): Promise<void> {
    const rows = await this.rows.query<Array<{ id: string }>>(
      `SELECT s.id FROM sessions s JOIN recordings r ON r.session_id = s.id
       WHERE s.node = $1 AND s.status IN ('closed', 'abandoned')
         AND (r.status IN ('pending', 'recording', 'finalizing')
              OR (r.status = 'failed' AND r.failure_reason ~* 'ENOSPC|EDQUOT|no space left'))`,
      [this.config.NODE_ID],
    );
    for (const { id } of rows) {
      await this.finalizeFromSpool(id).catch((err: unknown) =>
        this.logger.error({ err, sessionId: id }, 'could not recover a recording'),
      );
    }
  }

  /**
   * Below HEALTH_MIN_FREE_DISK_MB under DATA_DIR no session starts or resumes here (503 / 1013):
   * it would fill the rest and stop mid-stream.
   */
  private async assertDiskSpace(): Promise<void> {
    if (await this.freeSpace.low()) {
      throw new AppError(
        ErrorCode.InsufficientStorage,
        'free disk space on this node is below its minimum; try again later',
        { retryAfterS: LOW_DISK_RETRY_S },
      );
    }
  }

  private withLock<T>(sessionId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(sessionId) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.locks.set(sessionId, settled);
    void settled.then(() => {
      if (this.locks.get(sessionId) === settled) {
        this.locks.delete(sessionId);
      }
    });
    return next;
  }
}

/** A session's counters from its spool's summary and the bad images among its video records. */
function countsOf(summary: SpoolSummary, rejected: number): SessionCounts {
  const stored = storedIn(summary);
  return {
    lastSeq: summary.lastSeq,
    videoFrames: stored.video - rejected,
    audioFrames: stored.audio,
    rejectedFrames: rejected,
    bytesIn: stored.bytes,
  };
}

function busyError(): AppError {
  return new AppError(
    ErrorCode.SessionBusy,
    'another node holds this session and did not let go of it in time; resume again',
    { retryAfterS: BUSY_RETRY_S },
  );
}

function tokenMatches(token: string, hash: string): boolean {
  const given = createHash('sha256').update(token).digest();
  const stored = Buffer.from(hash, 'hex');
  return stored.length === given.length && timingSafeEqual(given, stored);
}
