import type { Logger } from '@nestjs/common';
import type { AuditWriter } from '../audit/audit-writer.service';
import type { AppConfig } from '../config/config';
import {
  encodeMediaMessage,
  PTS_MAX_BACKWARD_MS,
  PTS_MAX_FORWARD_MS,
  ptsPlausible,
  readMediaHeader,
  Track,
} from '../protocol/media-header';
import type { SessionStore } from '../sessions/session-store.service';
import type { SpoolWriter } from '../spool/spool';
import { SessionRuntime } from './session-runtime';

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
      totals: { frames: 0, bytes: 0, acks: 0 },
      config: { ACK_INTERVAL_MS: 200, ACK_MAX_FRAMES: 50, RESUME_WINDOW_MS: 60_000 } as AppConfig,
      store: {} as SessionStore,
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
      videoFrames: 0,
      audioFrames: 0,
      rejectedFrames: 0,
      bytesIn: 0,
      highestPts: 0,
      interruptedAt: null,
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

  it('refuses 0xFFFFFFFF after 0 without storing it, drops what follows, and takes the resend', () => {
    expect(ingest(1, 0)).toBe('stored');
    expect(ingest(2, 0xffffffff)).toBe('implausible_pts');
    expect(runtime.nextSeq).toBe(2);
    // Pipelined behind the refused frame: dropped, not a gap that would end the connection.
    expect(ingest(3, 0)).toBe('duplicate');
    expect(ingest(2, 100)).toBe('stored');
    expect(ingest(3, 200)).toBe('stored');
    expect(stored).toEqual([1, 2, 3]);
    expect(runtime.frames).toBe(3);
  });

  it('is back to the plain sequence rule once the refused seq was resent', () => {
    expect(ingest(5, 300)).toBe('gap');
  });
});
