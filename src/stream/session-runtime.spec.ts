import type { Logger } from '@nestjs/common';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditWriter } from '../audit/audit-writer.service';
import { loadConfig } from '../config/config';
import type { AppConfig } from '../config/config';
import {
  encodeMediaMessage,
  FLAG_KEY,
  type MediaHeader,
  PTS_MAX_BACKWARD_MS,
  PTS_MAX_FORWARD_MS,
  ptsPlausible,
  readMediaHeader,
  readStoredHeader,
  Track,
} from '../protocol/media-header';
import type { SessionStats, SessionStore } from '../sessions/session-store.service';
import { SpoolWriter } from '../spool/spool';
import { type RuntimeDeps, SessionRuntime } from './session-runtime';
import { Histogram } from '../metrics/prometheus';
import { ChunkGate } from './chunk-gate';

/** A JPEG session's media settings, as `open` without a codec gives. */
const JPEG_MEDIA = {
  video: { width: 640, height: 480 },
  audio: null,
  gate: null,
  media: {
    video: {
      codec: 'jpeg',
      maxWidth: 1920,
      maxHeight: 1080,
      maxKbps: 16_000,
      keyframeIntervalMs: 5_000,
    },
    audio: null,
  },
};

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
    totals: {
      frames: 0,
      bytes: 0,
      acks: 0,
      ackLatency: new Histogram('ack', 'ack', [1]),
      spoolSync: new Histogram('sync', 'sync', [1]),
    },
    // Acks only when the test syncs: no ack timer fires during a test (each is released after).
    config: loadConfig({ NODE_ENV: 'test', ACK_INTERVAL_MS: '10000', ACK_MAX_FRAMES: '10000' }),
    store: {
      transition: () => Promise.resolve(true),
      end: () => Promise.resolve(true),
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
    leaseHeld: () => true,
    leaseLost: () => undefined,
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
          ...JPEG_MEDIA,
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

  it('settles a refused chunk with a tombstone: acknowledged, offered as refused, counted as rejected once durable', async () => {
    const spool = new HeldSpool();
    const sent: unknown[] = [];
    const gate = new ChunkGate(
      { check: (chunk) => (chunk[0] === 0xff ? 'garbage' : null) },
      null,
      5_000,
      0,
      0,
    );
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
          ...JPEG_MEDIA,
          gate,
        },
        spool as unknown as SpoolWriter,
      ),
    );
    const offered: Array<{ seq: number; refused: boolean; bytes: number }> = [];
    r.setRecording({
      offer: (message: Buffer, h: MediaHeader & { refused?: boolean }) =>
        offered.push({ seq: h.seq, refused: h.refused === true, bytes: message.length }),
      durable: () => undefined,
      abort: () => undefined,
    } as never);
    const sink = {
      transport: 'ws' as const,
      connectionId: 'c1',
      ack: (seq: number) => sent.push({ ack: seq }),
      send: (m: unknown) => sent.push(m),
      replaced: () => undefined,
      failed: () => undefined,
      throttle: () => undefined,
    };
    const attached = r.attach(sink, 'opened');
    spool.release();
    await attached;
    const key = encodeMediaMessage(Track.Video, 1, 0, Buffer.from([1, 2, 3]), FLAG_KEY);
    const bad = encodeMediaMessage(Track.Video, 2, 100, Buffer.from([0xff, 2, 3]));
    expect(r.ingest(key, header(key))).toBe('stored');
    expect(r.ingest(bad, header(bad))).toBe('refused');
    expect(r.refusal).toBe('garbage');
    expect(r.keyframeWanted).toBe('refused');
    expect(sent).toContainEqual({ type: 'keyframe', reason: 'refused' });
    // The spool holds the refused chunk's header alone, flagged refused.
    const tombstone = readStoredHeader(spool.appended[1]);
    expect(tombstone).toMatchObject({ seq: 2, refused: true });
    expect(spool.appended[1].length).toBe(12);
    expect(offered).toEqual([
      { seq: 1, refused: false, bytes: 15 },
      { seq: 2, refused: true, bytes: 12 },
    ]);
    // The recorder reports the tombstone when it reads it; it counts once durable.
    r.recorderEvents.onRefused(2);
    expect(r.counts.rejectedFrames).toBe(0);
    const synced = r.syncNow();
    spool.release();
    await synced;
    expect(r.counts).toEqual({
      lastSeq: 2,
      videoFrames: 1,
      audioFrames: 0,
      rejectedFrames: 1,
      bytesIn: 15 + 12,
    });
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
            ...JPEG_MEDIA,
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
        totals: {
          frames: 0,
          bytes: 0,
          acks: 0,
          ackLatency: new Histogram('ack', 'ack', [1]),
          spoolSync: new Histogram('sync', 'sync', [1]),
        },
        config: loadConfig({ NODE_ENV: 'test', RESUME_WINDOW_MS: '1000' }),
        store: {
          transition: down,
          end: down,
          saveStats: down,
          saveMediaOrigin: () => Promise.resolve(),
        } as unknown as SessionStore,
        audit: { record: () => undefined } as unknown as AuditWriter,
        logger: { error: () => undefined } as unknown as Logger,
        onEnded: (r) => ended.push(r),
        onWindowPassed: () => windowPassed(),
        leaseHeld: () => true,
        leaseLost: () => undefined,
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
        ...JPEG_MEDIA,
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
      totals: {
        frames: 0,
        bytes: 0,
        acks: 0,
        ackLatency: new Histogram('ack', 'ack', [1]),
        spoolSync: new Histogram('sync', 'sync', [1]),
      },
      config: { ACK_INTERVAL_MS: 200, ACK_MAX_FRAMES: 50, RESUME_WINDOW_MS: 60_000 } as AppConfig,
      store: { saveMediaOrigin: () => Promise.resolve() } as unknown as SessionStore,
      audit: {} as AuditWriter,
      logger: {} as Logger,
      onEnded: () => undefined,
      onWindowPassed: () => undefined,
      leaseHeld: () => true,
      leaseLost: () => undefined,
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
      ...JPEG_MEDIA,
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

describe('SessionRuntime message timing', () => {
  /** The messages a runtime stored, and a recording that notes when it was finalized. */
  function setup(mediaOrigin: Date | null = null, highestPts = 0) {
    const stored: Array<{ id: string; recordingMs: number | null }> = [];
    const events: string[] = [];
    const held = new Map<string, () => void>();
    const ok = () => Promise.resolve(true);
    const spool = {
      append: () => undefined,
      pendingBytes: 0,
      sync: () => Promise.resolve(),
      write: () => Promise.resolve(),
      close: () => Promise.resolve(),
    } as unknown as SpoolWriter;
    const runtime = new SessionRuntime(
      {
        totals: {
          frames: 0,
          bytes: 0,
          acks: 0,
          ackLatency: new Histogram('ack', 'ack', [1]),
          spoolSync: new Histogram('sync', 'sync', [1]),
        },
        config: loadConfig({ NODE_ENV: 'test', ACK_INTERVAL_MS: '10000', ACK_MAX_FRAMES: '10000' }),
        store: {
          transition: ok,
          end: ok,
          saveStats: ok,
          saveMediaOrigin: ok,
          storeMessage: (
            _session: string,
            _direction: string,
            id: string,
            _body: unknown,
            _sender: string,
            _at: Date,
            recordingMs: number | null,
          ) => {
            stored.push({ id, recordingMs });
            // A message whose id starts with `held` is stored when the test says so.
            return id.startsWith('held')
              ? new Promise<void>((resolve) =>
                  held.set(id, () => {
                    events.push(`stored ${id}`);
                    resolve();
                  }),
                )
              : Promise.resolve();
          },
        } as unknown as SessionStore,
        audit: { record: () => undefined } as unknown as AuditWriter,
        logger: { error: () => undefined, warn: () => undefined } as unknown as Logger,
        onEnded: () => undefined,
        onWindowPassed: () => undefined,
        leaseHeld: () => true,
        leaseLost: () => undefined,
      },
      {
        id: '00000000-0000-4000-8000-000000000004',
        subject: 'alice',
        channel: 'app',
        resumeTokenHash: '',
        status: 'open',
        lastSeq: 0,
        stored: { video: 0, audio: 0, bytes: 0 },
        highestPts,
        interruptedAt: null,
        mediaOrigin,
        ...JPEG_MEDIA,
      },
      spool,
    );
    runtime.setRecording({
      id: 'rec',
      offer: () => undefined,
      durable: () => undefined,
      abort: () => undefined,
      finish: () => {
        events.push('finalized');
        return Promise.resolve({ id: 'rec', status: 'ready', durationMs: 0 });
      },
    });
    return { runtime, stored, events, held };
  }

  let now = 1_000_000;
  beforeEach(() => {
    jest.spyOn(Date, 'now').mockImplementation(() => now);
  });
  afterEach(() => jest.restoreAllMocks());

  const frame = (seq: number, pts: number) => {
    const m = encodeMediaMessage(Track.Video, seq, pts, Buffer.alloc(10));
    return [m, header(m)] as const;
  };

  it('times a message by its arrival minus the first frame arrival less its pts; 0 before any frame', async () => {
    const { runtime, stored } = setup();
    await runtime.storeMessage('in', 'early', {}, 'alice');
    now += 700;
    // The first frame arrives 300 ms after its capture time 0 was taken: the origin is 300 ms back.
    expect(runtime.ingest(...frame(1, 300))).toBe('stored');
    now += 1_234;
    await runtime.storeMessage('out', 'later', {}, 'api');
    // A frame that arrives late says nothing new: the origin stays the first frame's.
    now += 5_000;
    expect(runtime.ingest(...frame(2, 400))).toBe('stored');
    await runtime.storeMessage('in', 'last', {}, 'alice');
    expect(stored).toEqual([
      { id: 'early', recordingMs: 0 },
      { id: 'later', recordingMs: 1_534 },
      { id: 'last', recordingMs: 6_534 },
    ]);
    await runtime.release();
  });

  it('goes on with the origin from the row after a restart, and without one places a message after what the spool holds', async () => {
    const origin = setup(new Date(now - 42_000), 41_000);
    await origin.runtime.storeMessage('in', 'a', {}, 'alice');
    const lost = setup(null, 41_000);
    await lost.runtime.storeMessage('in', 'b', {}, 'alice');
    expect(lost.runtime.ingest(...frame(1, 45_000))).toBe('stored');
    now += 100;
    await lost.runtime.storeMessage('in', 'c', {}, 'alice');
    expect([...origin.stored, ...lost.stored]).toEqual([
      { id: 'a', recordingMs: 42_000 },
      { id: 'b', recordingMs: 41_000 },
      { id: 'c', recordingMs: 45_100 },
    ]);
    await Promise.all([origin.runtime.release(), lost.runtime.release()]);
  });

  it('finalizes the recording only once every message timed into it is stored; later ones are outside it', async () => {
    const { runtime, stored, events, held } = setup();
    expect(runtime.ingest(...frame(1, 0))).toBe('stored');
    const pending = runtime.storeMessage('in', 'held-1', {}, 'alice');
    const closing = runtime.close('client_close');
    await runtime.storeMessage('out', 'after-close', {}, 'api');
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual([]);
    held.get('held-1')?.();
    await Promise.all([pending, closing]);
    expect(events).toEqual(['stored held-1', 'finalized']);
    expect(stored).toEqual([
      { id: 'held-1', recordingMs: 0 },
      { id: 'after-close', recordingMs: null },
    ]);
  });
});
