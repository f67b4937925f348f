import type { Logger } from '@nestjs/common';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditWriter } from '../audit/audit-writer.service';
import { loadConfig } from '../config/config';
import type { AppConfig } from '../config/config';
import {
  encodeMediaMessage,
  type MediaHeader,
  PTS_MAX_BACKWARD_MS,
  PTS_MAX_FORWARD_MS,
  ptsPlausible,
  readMediaHeader,
  Track,
} from '../protocol/media-header';
import type { SessionStats, SessionStore } from '../sessions/session-store.service';
import { SpoolWriter } from '../spool/spool';
import { type RuntimeDeps, SessionRuntime } from './session-runtime';
import { Histogram } from '../metrics/prometheus';

/** A spool whose syncs are held until the test lets them finish (or fail). */
class HeldSpool {
  readonly appended: Buffer[] = [];
  private readonly held: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  pendingBytes = 0;

  append(message: Buffer): void {
    this.appended.push(message);
  }
  sync(): Promise<void> {
    return new Promise((resolve, reject) => this.held.push({ resolve, reject }));
  }
  write(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  release(): void {
    this.held.splice(0).forEach((h) => h.resolve());
  }
  failAll(): void {
    this.held.splice(0).forEach((h) => h.reject(new Error('EIO')));
  }
}

function header(message: Buffer): MediaHeader {
  const h = readMediaHeader(message);
  if (typeof h === 'string') {
    throw new Error(h);
  }
  return h;
}

const flush = () => new Promise((r) => setImmediate(r));

describe('SessionRuntime counters', () => {
  const saved: SessionStats[][] = [];
  const deps = (): RuntimeDeps => ({
    totals: { frames: 0, bytes: 0, acks: 0, ackLatency: new Histogram('ack', 'ack', [1]) },
    // Acks only when the test syncs: no ack timer fires during a test (each is released after).
    config: loadConfig({ NODE_ENV: 'test', ACK_INTERVAL_MS: '10000', ACK_MAX_FRAMES: '10000' }),
    store: {
      transition: () => Promise.resolve(true),
      saveMediaOrigin: () => Promise.resolve(),
      saveStats: (rows: SessionStats[]) => {
        saved.push(rows);
        return Promise.resolve();
      },
    } as unknown as SessionStore,
    audit: { record: () => undefined } as unknown as AuditWriter,
    logger: { error: () => undefined } as unknown as Logger,
    onEnded: () => undefined,
    onWindowPassed: () => undefined,
  });

  const made: SessionRuntime[] = [];
  afterEach(async () => {
    await Promise.all(made.splice(0).map((r) => r.release()));
  });

  function runtime(spool: HeldSpool, stored = { video: 0, audio: 0, bytes: 0 }, lastSeq = 0) {
    return track(
      new SessionRuntime(
        deps(),
        {
          id: '00000000-0000-4000-8000-000000000001',
          subject: 'alice',
          channel: 'app',
          resumeTokenHash: '',
          status: 'open',
          lastSeq,
          stored,
          highestPts: 0,
          interruptedAt: null,
          mediaOrigin: null,
        },
        spool as unknown as SpoolWriter,
      ),
    );
  }

  function track(r: SessionRuntime): SessionRuntime {
    made.push(r);
    return r;
  }

  const video = (seq: number) => encodeMediaMessage(Track.Video, seq, seq * 100, Buffer.alloc(50));
  const audio = (seq: number) => encodeMediaMessage(Track.Audio, seq, seq * 100, Buffer.alloc(20));

  it('counts a frame only once the spool sync that covers it has completed', async () => {
    const spool = new HeldSpool();
    const r = runtime(spool);
    for (const m of [video(1), audio(2), video(3)]) {
      expect(r.ingest(m, header(m))).toBe('stored');
    }
    expect(r.frames).toBe(0);
    const synced = r.syncNow();
    // Appended while the sync runs: not covered by it.
    const late = video(4);
    r.ingest(late, header(late));
    spool.release();
    await synced;
    expect(r.frames).toBe(3);
    expect(r.counts).toEqual({
      lastSeq: 3,
      videoFrames: 2,
      audioFrames: 1,
      rejectedFrames: 0,
      bytesIn: 62 + 32 + 62,
    });
  });

  it('keeps the last durable counts when a sync fails (a full disk stores nothing more)', async () => {
    const spool = new HeldSpool();
    const r = runtime(spool);
    r.ingest(video(1), header(video(1)));
    const first = r.syncNow();
    spool.release();
    await first;
    r.ingest(video(2), header(video(2)));
    const second = r.syncNow();
    spool.failAll();
    await expect(second).rejects.toThrow('EIO');
    expect(r.counts).toMatchObject({ lastSeq: 1, videoFrames: 1 });
  });

  it('counts a bad image reported before its frame was durable once it is, and only then', async () => {
    const spool = new HeldSpool();
    const r = runtime(spool);
    r.setRecording({
      offer: () => undefined,
      durable: () => undefined,
      abort: () => undefined,
    } as never);
    r.ingest(video(1), header(video(1)));
    r.ingest(video(2), header(video(2)));
    r.recorderEvents.onBadImage(2, 'bad');
    expect(r.counts.rejectedFrames).toBe(0);
    const synced = r.syncNow();
    spool.release();
    await synced;
    expect(r.counts).toMatchObject({ videoFrames: 1, rejectedFrames: 1 });
    expect(r.frames).toBe(2);
    // A bad image at or below the durable seq counts at once.
    r.recorderEvents.onBadImage(1, 'bad');
    expect(r.counts).toMatchObject({ videoFrames: 0, rejectedFrames: 2 });
  });

  it('starts from what the spool holds and writes it with the next flush', async () => {
    const r = runtime(new HeldSpool(), { video: 7, audio: 3, bytes: 999 }, 10);
    expect(r.takeStats()).toMatchObject({
      lastSeq: 10,
      videoFrames: 7,
      audioFrames: 3,
      bytesIn: 999,
    });
    expect(r.takeStats()).toBeNull();
    r.statsNotSaved();
    expect(r.takeStats()).toMatchObject({ lastSeq: 10 });
    await flush();
  });

  describe('with a real spool', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'framegate-runtime-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('reports exactly the records a reopened spool finds', async () => {
      const path = join(dir, 's.spool');
      const writer = await SpoolWriter.open(path);
      const r = track(
        new SessionRuntime(
          deps(),
          {
            id: '00000000-0000-4000-8000-000000000002',
            subject: 'alice',
            channel: 'app',
            resumeTokenHash: '',
            status: 'open',
            lastSeq: 0,
            stored: { video: 0, audio: 0, bytes: 0 },
            highestPts: 0,
            interruptedAt: null,
            mediaOrigin: null,
          },
          writer,
        ),
      );
      for (let seq = 1; seq <= 30; seq++) {
        const m = seq % 3 === 0 ? audio(seq) : video(seq);
        r.ingest(m, header(m));
      }
      await r.syncNow();
      await writer.close();
      const reopened = await SpoolWriter.open(path);
      expect(r.frames).toBe(reopened.recovered.records);
      expect(r.counts).toMatchObject({
        lastSeq: reopened.recovered.lastSeq,
        audioFrames: reopened.recovered.audioRecords,
        bytesIn: reopened.recovered.messageBytes,
      });
      await reopened.close();
    });
  });
});

describe('SessionRuntime when the database refuses a transition', () => {
  const down = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
  function setup(status: 'open' | 'interrupted') {
    let windowPassed!: () => void;
    const passed = new Promise<void>((resolve) => (windowPassed = resolve));
    const ended: SessionRuntime[] = [];
    const spool = {
      append: () => undefined,
      pendingBytes: 0,
      sync: () => Promise.resolve(),
      write: () => Promise.resolve(),
      close: () => Promise.resolve(),
    } as unknown as SpoolWriter;
    const runtime = new SessionRuntime(
      {
        totals: { frames: 0, bytes: 0, acks: 0, ackLatency: new Histogram('ack', 'ack', [1]) },
        config: loadConfig({ NODE_ENV: 'test', RESUME_WINDOW_MS: '1000' }),
        store: {
          transition: down,
          saveStats: down,
          saveMediaOrigin: () => Promise.resolve(),
        } as unknown as SessionStore,
        audit: { record: () => undefined } as unknown as AuditWriter,
        logger: { error: () => undefined } as unknown as Logger,
        onEnded: (r) => ended.push(r),
        onWindowPassed: () => windowPassed(),
      },
      {
        id: '00000000-0000-4000-8000-000000000003',
        subject: 'alice',
        channel: 'app',
        resumeTokenHash: '',
        status,
        lastSeq: 0,
        stored: { video: 0, audio: 0, bytes: 0 },
        highestPts: 0,
        interruptedAt: status === 'interrupted' ? new Date() : null,
        mediaOrigin: null,
      },
      spool,
    );
    const sink = {
      transport: 'ws' as const,
      connectionId: null,
      ack: () => undefined,
      send: () => undefined,
      replaced: () => undefined,
      throttle: () => undefined,
      failed: () => undefined,
    };
    return { runtime, sink, passed, ended };
  }

  it('a resume it refuses leaves the session interrupted, with no transport and its window running', async () => {
    const { runtime, sink, passed } = setup('interrupted');
    await expect(runtime.attach(sink, 'resumed_ws')).rejects.toThrow('ECONNREFUSED');
    expect(runtime.status).toBe('interrupted');
    expect(runtime.attached).toBeNull();
    // The window runs again (RESUME_WINDOW_MS 1 s here): the session is abandoned in the end.
    await passed;
    await runtime.release();
  });

  it('a close it refuses drops the runtime and keeps the status of the row', async () => {
    const { runtime, sink, ended } = setup('open');
    // `open` attaches without a transition.
    await runtime.attach(sink, 'opened');
    await expect(runtime.close('client_close')).rejects.toThrow('ECONNREFUSED');
    expect(runtime.status).toBe('open');
    expect(runtime.attached).toBeNull();
    expect(ended).toEqual([runtime]);
    await runtime.release();
  });
});

describe('the pts rule', () => {
  it('accepts steady capture times, pauses up to the limit, and small steps back', () => {
    expect(ptsPlausible(0, 0)).toBe(true);
    expect(ptsPlausible(0, PTS_MAX_FORWARD_MS)).toBe(true);
    expect(ptsPlausible(5000, 5000 - PTS_MAX_BACKWARD_MS)).toBe(true);
  });

  it('refuses a wrapped or garbage pts, in either direction', () => {
    expect(ptsPlausible(0, 0xffffffff)).toBe(false);
    expect(ptsPlausible(0xffffffff - 100, 0)).toBe(false);
    expect(ptsPlausible(0, PTS_MAX_FORWARD_MS + 1)).toBe(false);
    expect(ptsPlausible(5000, 5000 - PTS_MAX_BACKWARD_MS - 1)).toBe(false);
  });
});

describe('SessionRuntime.ingest and the pts rule', () => {
  const stored: number[] = [];
  const spool = {
    append: (message: Buffer) => stored.push(message.readUInt32BE(4)),
    pendingBytes: 0,
    sync: () => Promise.resolve(),
    write: () => Promise.resolve(),
    close: () => Promise.resolve(),
  } as unknown as SpoolWriter;
  const runtime = new SessionRuntime(
    {
      totals: { frames: 0, bytes: 0, acks: 0, ackLatency: new Histogram('ack', 'ack', [1]) },
      config: { ACK_INTERVAL_MS: 200, ACK_MAX_FRAMES: 50, RESUME_WINDOW_MS: 60_000 } as AppConfig,
      store: { saveMediaOrigin: () => Promise.resolve() } as unknown as SessionStore,
      audit: {} as AuditWriter,
      logger: {} as Logger,
      onEnded: () => undefined,
      onWindowPassed: () => undefined,
    },
    {
      id: 'runtime-spec',
      subject: 'alice',
      channel: 'branch-app',
      resumeTokenHash: 'h',
      status: 'open',
      lastSeq: 0,
      stored: { video: 0, audio: 0, bytes: 0 },
      highestPts: 0,
      interruptedAt: null,
      mediaOrigin: null,
    },
    spool,
  );
  afterAll(() => runtime.release());

  const ingest = (seq: number, pts: number) => {
    const message = encodeMediaMessage(Track.Video, seq, pts, Buffer.from([seq]));
    const header = readMediaHeader(message);
    if (typeof header === 'string') {
      throw new Error(header);
    }
    return runtime.ingest(message, header);
  };

  it('refuses 0xFFFFFFFF after 0 without storing it, drops what follows, and takes the resend', async () => {
    expect(ingest(1, 0)).toBe('stored');
    expect(ingest(2, 0xffffffff)).toBe('implausible_pts');
    expect(runtime.nextSeq).toBe(2);
    // Pipelined behind the refused frame: dropped, not a gap that would end the connection.
    expect(ingest(3, 0)).toBe('duplicate');
    expect(ingest(2, 100)).toBe('stored');
    expect(ingest(3, 200)).toBe('stored');
    expect(stored).toEqual([1, 2, 3]);
    await runtime.syncNow();
    expect(runtime.frames).toBe(3);
  });

  it('is back to the plain sequence rule once the refused seq was resent', () => {
    expect(ingest(5, 300)).toBe('gap');
  });
});
