import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeMediaMessage, Track } from '../protocol/media-header';
import {
  readSpool,
  scanSpool,
  SPOOL_HEADER_BYTES,
  SPOOL_RECORD_PREFIX_BYTES,
  SpoolFollower,
  SpoolWriter,
  type SpoolRecord,
  type SpoolSummary,
} from './spool';

/** A media message whose payload is derived from its seq, so content mix-ups show. */
function frame(seq: number, payloadBytes = 100 + ((seq * 7919) % 30_000)): Buffer {
  const payload = Buffer.allocUnsafe(payloadBytes);
  for (let i = 0; i < payloadBytes; i++) {
    payload[i] = (seq + i) & 0xff;
  }
  return encodeMediaMessage(seq % 5 === 0 ? Track.Audio : Track.Video, seq, seq * 33, payload);
}

async function readAll(path: string): Promise<{ records: SpoolRecord[]; summary: SpoolSummary }> {
  const records: SpoolRecord[] = [];
  const it = readSpool(path);
  for (let r = await it.next(); ; r = await it.next()) {
    if (r.done) {
      return { records, summary: r.value };
    }
    records.push(r.value);
  }
}

function seqs(records: SpoolRecord[]): number[] {
  return records.map((r) => r.message.readUInt32BE(4));
}

/** Descriptors of this process open on `path` (Linux). */
function openFds(path: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(join('/proc/self/fd', fd)) === path;
    } catch {
      return false; // the descriptor readdir itself used, closed by now
    }
  }).length;
}

/**
 * Compares lists of Buffers byte for byte with Buffer.equals: Jest's toEqual walks a Buffer index by
 * index and takes minutes on megabytes on a busy machine. A mismatch names the first differing
 * message by index, length and sha256.
 */
function expectSameMessages(actual: Buffer[], expected: Buffer[]): void {
  const summarize = (b: Buffer | null | undefined) =>
    !b ? 'missing' : `${b.length} bytes, sha256 ${sha256(b)}`;
  const i = expected.findIndex((e, n) => !actual[n]?.equals(e));
  expect(i === -1 ? null : `message ${i}: ${summarize(actual[i])}`).toBe(
    i === -1 ? null : `message ${i}: ${summarize(expected[i])}`,
  );
  expect(actual).toHaveLength(expected.length);
}

/** Writers and followers a test opened: closed after it even when an assertion failed midway. */
const opened: Array<{ close(): Promise<void> }> = [];

function closeAfter<T extends { close(): Promise<void> }>(closable: T): T {
  opened.push(closable);
  return closable;
}

afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((c) => c.close()));
});

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describe('SpoolWriter and readSpool', () => {
  let dir: string;
  let path: string;
  /** FileHandle methods live on an internal class; reach its prototype through an instance. */
  let fileHandleProto: FileHandle;
  /** The real methods, for spies that pass calls through (read off the prototype, unbound). */
  let realWritev: FileHandle['writev'];
  let realDatasync: FileHandle['datasync'];

  beforeAll(async () => {
    const fh = await open(__filename, 'r');
    fileHandleProto = Object.getPrototypeOf(fh) as FileHandle;
    realWritev = Reflect.get<FileHandle, 'writev'>(fileHandleProto, 'writev');
    realDatasync = Reflect.get<FileHandle, 'datasync'>(fileHandleProto, 'datasync');
    await fh.close();
  });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'framegate-spool-'));
    path = join(dir, 'session.spool');
  });

  afterEach(() => {
    jest.restoreAllMocks();
    rmSync(dir, { recursive: true, force: true });
  });

  async function writeFrames(seqList: number[], size?: number): Promise<Buffer[]> {
    const writer = closeAfter(await SpoolWriter.open(path));
    const frames = seqList.map((seq) => frame(seq, size));
    for (const f of frames) {
      writer.append(f);
    }
    await writer.close();
    return frames;
  }

  it('creates a file holding only the header, with nothing recovered', async () => {
    const writer = closeAfter(await SpoolWriter.open(path));
    expect(writer.recovered).toEqual({
      records: 0,
      audioRecords: 0,
      messageBytes: 0,
      highestPts: 0,
      lastSeq: 0,
      truncatedBytes: 0,
    });
    await writer.close();

    const bytes = readFileSync(path);
    expect(bytes.length).toBe(SPOOL_HEADER_BYTES);
    expect(bytes.subarray(0, 8).toString('ascii')).toBe('FGSPOOL1');
    expect(bytes.readUInt32BE(8)).toBe(1);
    expect(bytes.readUInt32BE(12)).toBe(0);
  });

  it('reads back 300 messages of varied sizes in order, byte for byte', async () => {
    const writer = closeAfter(await SpoolWriter.open(path));
    const sent: Buffer[] = [];
    for (let seq = 1; seq <= 300; seq++) {
      // A few messages larger than the reader's 1 MiB read-ahead, and some tiny ones.
      const size = seq % 97 === 0 ? 2 * 1024 * 1024 - 12 : seq % 13 === 0 ? 1 : undefined;
      const message = frame(seq, size);
      sent.push(message);
      writer.append(message);
      if (seq % 50 === 0) {
        await writer.sync();
      }
    }
    await writer.close();

    const { records, summary } = await readAll(path);
    expect(seqs(records)).toEqual(range(1, 300));
    records.forEach((r, i) => expect(r.message.equals(sent[i])).toBe(true));
    let offset = SPOOL_HEADER_BYTES;
    for (const r of records) {
      expect(r.offset).toBe(offset);
      offset += SPOOL_RECORD_PREFIX_BYTES + r.message.length;
    }
    const expected = {
      records: 300,
      // Every fifth message is audio (see `frame`): counted by the track byte of each record.
      audioRecords: 60,
      messageBytes: sent.reduce((n, m) => n + m.length, 0),
      // `frame` captures seq × 33 ms.
      highestPts: 300 * 33,
      lastSeq: 300,
      validBytes: offset,
      tornBytes: 0,
      torn: null,
    };
    expect(summary).toEqual(expected);
    expect(statSync(path).size).toBe(offset);
    await expect(scanSpool(path)).resolves.toEqual(expected);
  });

  it('coalesces concurrent syncs: one writev or fdatasync at a time, every message once, in order', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const track = async <T>(op: () => Promise<T>): Promise<T> => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        return await op();
      } finally {
        inFlight--;
      }
    };
    const writev = jest.spyOn(fileHandleProto, 'writev').mockImplementation(function (
      this: FileHandle,
      buffers,
      position,
    ) {
      return track(() => realWritev.call(this, buffers, position));
    });
    const datasync = jest.spyOn(fileHandleProto, 'datasync').mockImplementation(function (
      this: FileHandle,
    ) {
      return track(() => realDatasync.call(this));
    });

    const writer = closeAfter(await SpoolWriter.open(path));
    const syncs: Promise<void>[] = [];
    const durableAtResolve: number[] = [];
    for (let seq = 1; seq <= 100; seq++) {
      writer.append(frame(seq));
      if (seq % 3 === 0) {
        const upTo = seq;
        syncs.push(
          writer.sync().then(async () => {
            // Everything appended before this sync() was called must be on disk by now.
            durableAtResolve.push(upTo);
            const { records } = await readAll(path);
            expect(records.length).toBeGreaterThanOrEqual(upTo);
          }),
        );
      }
      if (seq % 10 === 0) {
        await Promise.resolve();
      }
    }
    syncs.push(writer.sync());
    await Promise.all(syncs);
    await writer.close();

    expect(maxInFlight).toBe(1);
    expect(durableAtResolve).toHaveLength(33);
    // 34 sync() calls made mostly while another ran: far fewer fdatasyncs than calls.
    expect(datasync.mock.calls.length).toBeLessThan(10);
    expect(writev.mock.calls.length).toBeLessThanOrEqual(datasync.mock.calls.length + 1);
    const { records, summary } = await readAll(path);
    expect(seqs(records)).toEqual(range(1, 100));
    expect(summary.torn).toBeNull();
  });

  it('runs one further write and fdatasync for a sync() called while one is running', async () => {
    const events: string[] = [];
    jest.spyOn(fileHandleProto, 'writev').mockImplementation(function (
      this: FileHandle,
      buffers,
      position,
    ) {
      events.push(`writev:${buffers.length / 2}`);
      return realWritev.call(this, buffers, position);
    });
    jest.spyOn(fileHandleProto, 'datasync').mockImplementation(function (this: FileHandle) {
      events.push('datasync');
      return realDatasync.call(this);
    });
    const writer = closeAfter(await SpoolWriter.open(path));

    writer.append(frame(1));
    writer.append(frame(2));
    const first = writer.sync();
    writer.append(frame(3));
    const second = writer.sync();
    const third = writer.sync(); // shares the second round
    await Promise.all([first, second, third]);
    // Nothing appended since: already durable, no further I/O.
    await writer.sync();

    expect(events).toEqual(['writev:2', 'datasync', 'writev:1', 'datasync']);
    await writer.close();
    expect(events).toHaveLength(4);
  });

  it('hands the appended Buffer objects themselves to writev, at most 1024 per call', async () => {
    const calls: Buffer[][] = [];
    jest.spyOn(fileHandleProto, 'writev').mockImplementation(function (
      this: FileHandle,
      buffers,
      position,
    ) {
      // The writer reuses its iovec array, so keep a copy of the list (not of the buffers).
      calls.push([...buffers] as Buffer[]);
      return realWritev.call(this, buffers, position);
    });
    const writer = closeAfter(await SpoolWriter.open(path));
    const frames = range(1, 1500).map((seq) => frame(seq, 64));
    for (const f of frames) {
      writer.append(f);
    }
    await writer.sync();
    await writer.close();

    expect(calls.map((buffers) => buffers.length)).toEqual([1024, 1024, 952]);
    const messages = calls.flat().filter((_, i) => i % 2 === 1);
    expect(messages).toHaveLength(frames.length);
    messages.forEach((m, i) => expect(m).toBe(frames[i]));
  });

  it('writes without fdatasync on write(), emptying pendingBytes', async () => {
    const datasync = jest.spyOn(fileHandleProto, 'datasync');
    const writer = closeAfter(await SpoolWriter.open(path));
    writer.append(frame(1, 1000));
    writer.append(frame(2, 2000));
    expect(writer.pendingBytes).toBe(3024);

    const written = writer.write();
    expect(writer.pendingBytes).toBe(3024); // still referenced until the writev completes
    await written;

    expect(writer.pendingBytes).toBe(0);
    expect(datasync).not.toHaveBeenCalled();
    await expect(scanSpool(path)).resolves.toMatchObject({ records: 2, lastSeq: 2, torn: null });
    await writer.sync();
    expect(datasync).toHaveBeenCalledTimes(1);
    await writer.close();
  });

  it('finishes a short writev with further calls', async () => {
    const writev = jest.spyOn(fileHandleProto, 'writev').mockImplementationOnce(function (
      this: FileHandle,
      buffers,
      position,
    ) {
      // Writes the first prefix and 5 bytes of the first message only.
      return realWritev.call(this, [buffers[0], (buffers[1] as Buffer).subarray(0, 5)], position);
    });
    const writer = closeAfter(await SpoolWriter.open(path));
    const frames = range(1, 4).map((seq) => frame(seq));
    frames.forEach((f) => writer.append(f));
    await writer.close();

    expect(writev.mock.calls.length).toBe(2);
    const { records, summary } = await readAll(path);
    records.forEach((r, i) => expect(r.message.equals(frames[i])).toBe(true));
    expect(summary).toMatchObject({ records: 4, torn: null });
  });

  it('continues after the last record on reopen, reporting its seq', async () => {
    await writeFrames(range(1, 5));

    const writer = closeAfter(await SpoolWriter.open(path));
    expect(writer.recovered).toEqual({
      records: 5,
      audioRecords: 1,
      messageBytes: range(1, 5).reduce((n, seq) => n + frame(seq).length, 0),
      highestPts: 5 * 33,
      lastSeq: 5,
      truncatedBytes: 0,
    });
    range(6, 8).forEach((seq) => writer.append(frame(seq)));
    await writer.close();

    const { records, summary } = await readAll(path);
    expect(seqs(records)).toEqual(range(1, 8));
    expect(summary).toMatchObject({ records: 8, lastSeq: 8, tornBytes: 0, torn: null });
  });

  type Damage = (bytes: Buffer, lastOffset: number) => Buffer;
  const tornTails: [string, Damage, SpoolSummary['torn'], number][] = [
    ['a truncated body', (b) => b.subarray(0, b.length - 10), 'short_body', 9],
    ['a truncated prefix', (b) => Buffer.concat([b, Buffer.from([0, 0, 1])]), 'short_prefix', 10],
    [
      'a flipped byte (CRC mismatch)',
      (b, last) => {
        b[last + SPOOL_RECORD_PREFIX_BYTES + 20] ^= 0x40;
        return b;
      },
      'crc_mismatch',
      9,
    ],
    ['a zero-filled tail', (b) => Buffer.concat([b, Buffer.alloc(4096)]), 'bad_length', 10],
  ];

  it.each(tornTails)(
    'detects and truncates %s, then appends cleanly',
    async (_name, damage, reason, kept) => {
      await writeFrames(range(1, 10));
      const intact = await readAll(path);
      const lastOffset = intact.records[9].offset;
      writeFileSync(path, damage(readFileSync(path), lastOffset));
      const damagedSize = statSync(path).size;

      const { records, summary } = await readAll(path);
      expect(seqs(records)).toEqual(range(1, kept));
      const validBytes = kept === 10 ? intact.summary.validBytes : lastOffset;
      const keptBytes = range(1, kept).reduce((n, seq) => n + frame(seq).length, 0);
      expect(summary).toEqual({
        records: kept,
        audioRecords: Math.floor(kept / 5),
        messageBytes: keptBytes,
        highestPts: kept * 33,
        lastSeq: kept,
        validBytes,
        tornBytes: damagedSize - validBytes,
        torn: reason,
      });

      const writer = closeAfter(await SpoolWriter.open(path));
      expect(writer.recovered).toEqual({
        records: kept,
        audioRecords: Math.floor(kept / 5),
        messageBytes: keptBytes,
        highestPts: kept * 33,
        lastSeq: kept,
        truncatedBytes: damagedSize - validBytes,
      });
      expect(statSync(path).size).toBe(validBytes);
      range(kept + 1, 12).forEach((seq) => writer.append(frame(seq)));
      await writer.close();

      const after = await readAll(path);
      expect(seqs(after.records)).toEqual(range(1, 12));
      expect(after.summary).toMatchObject({ lastSeq: 12, tornBytes: 0, torn: null });
    },
  );

  it('rewrites the header of a file cut short while being created', async () => {
    writeFileSync(path, Buffer.from('FGSP', 'ascii'));
    await expect(scanSpool(path)).resolves.toEqual({
      records: 0,
      audioRecords: 0,
      messageBytes: 0,
      highestPts: 0,
      lastSeq: 0,
      validBytes: 0,
      tornBytes: 4,
      torn: 'short_header',
    });

    const writer = closeAfter(await SpoolWriter.open(path));
    expect(writer.recovered).toEqual({
      records: 0,
      audioRecords: 0,
      messageBytes: 0,
      highestPts: 0,
      lastSeq: 0,
      truncatedBytes: 4,
    });
    writer.append(frame(1));
    await writer.close();

    const { records, summary } = await readAll(path);
    expect(seqs(records)).toEqual([1]);
    expect(summary.torn).toBeNull();
  });

  it('rejects a file with a bad magic or an unknown version, naming it', async () => {
    writeFileSync(path, Buffer.from('NOTSPOOL\0\0\0\x01\0\0\0\0', 'latin1'));
    await expect(SpoolWriter.open(path)).rejects.toThrow(`${path}: not a framegate spool file`);
    await expect(readAll(path)).rejects.toThrow('bad magic');

    writeFileSync(path, Buffer.from('JPEG'));
    await expect(SpoolWriter.open(path)).rejects.toThrow('bad magic');

    const v2 = Buffer.from('FGSPOOL1\0\0\0\x02\0\0\0\0', 'latin1');
    writeFileSync(path, v2);
    await expect(SpoolWriter.open(path)).rejects.toThrow(
      `${path}: unsupported spool format version 2`,
    );
    // Rejected files are left as they were.
    expect(readFileSync(path).equals(v2)).toBe(true);
  });

  it('fails for good on a write error: sync, write and append report it, nothing is dropped silently', async () => {
    const writer = closeAfter(await SpoolWriter.open(path));
    writer.append(frame(1));
    await writer.sync();

    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), {
      code: 'ENOSPC',
    });
    jest.spyOn(fileHandleProto, 'writev').mockRejectedValueOnce(enospc);
    writer.append(frame(2));
    const failed = writer.sync();
    writer.append(frame(3)); // queued for the round after the failing one
    const next = writer.sync();

    await expect(failed).rejects.toBe(enospc);
    await expect(next).rejects.toBe(enospc);
    await expect(writer.sync()).rejects.toBe(enospc);
    await expect(writer.write()).rejects.toBe(enospc);
    expect(() => writer.append(frame(4))).toThrow(enospc);
    expect(writer.pendingBytes).toBe(0);
    await expect(writer.close()).resolves.toBeUndefined();

    const reopened = closeAfter(await SpoolWriter.open(path));
    expect(reopened.recovered).toMatchObject({ records: 1, lastSeq: 1 });
    await reopened.close();
  });

  it('fails for good when fdatasync fails', async () => {
    const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    jest.spyOn(fileHandleProto, 'datasync').mockRejectedValueOnce(eio);
    const writer = closeAfter(await SpoolWriter.open(path));
    writer.append(frame(1));

    await expect(writer.sync()).rejects.toBe(eio);
    await expect(writer.sync()).rejects.toBe(eio);
    expect(() => writer.append(frame(2))).toThrow(eio);
    await writer.close();
  });

  it('rejects a failing final sync from close() and still closes the file', async () => {
    const writer = closeAfter(await SpoolWriter.open(path));
    expect(openFds(path)).toBe(1);
    const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    jest.spyOn(fileHandleProto, 'datasync').mockRejectedValueOnce(eio);
    writer.append(frame(1));

    await expect(writer.close()).rejects.toBe(eio);
    await expect(writer.close()).rejects.toBe(eio);
    expect(openFds(path)).toBe(0);
  });

  it('syncs on close, once, and refuses appends afterwards', async () => {
    const writer = closeAfter(await SpoolWriter.open(path));
    writer.append(frame(1));
    const closing = writer.close();
    expect(writer.close()).toBe(closing);
    await closing;

    expect(() => writer.append(frame(2))).toThrow('spool writer is closed');
    await expect(writer.sync()).rejects.toThrow('spool writer is closed');
    await expect(scanSpool(path)).resolves.toMatchObject({ records: 1, lastSeq: 1, torn: null });
  });

  it('discards what is queued on discard(): what was synced stays, nothing queued is written, the file is closed', async () => {
    const writer = closeAfter(await SpoolWriter.open(path));
    writer.append(frame(1));
    writer.append(frame(2));
    await writer.sync();
    writer.append(frame(3));
    const queuedSync = writer.sync();
    writer.append(frame(4));
    const discarding = writer.discard();
    expect(writer.close()).toBe(discarding);
    await discarding;
    // The round under way when discard() was called completes; nothing after it is written.
    await queuedSync;
    expect(() => writer.append(frame(5))).toThrow('spool writer is closed');
    const { records } = await readAll(path);
    expect(seqs(records)).toEqual([1, 2, 3]);
    expect(openFds(path)).toBe(0);
  });

  it('refuses empty messages', async () => {
    const writer = closeAfter(await SpoolWriter.open(path));
    expect(() => writer.append(Buffer.alloc(0))).toThrow(RangeError);
    expect(writer.pendingBytes).toBe(0);
    await writer.close();
  });
});

describe('SpoolFollower', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'framegate-follow-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Every record the follower can read from `offset` on, and the offset after the last one. */
  async function follow(
    follower: SpoolFollower,
    offset: number,
  ): Promise<{ messages: Buffer[]; offset: number }> {
    const messages: Buffer[] = [];
    for (let m = await follower.recordAt(offset); m; m = await follower.recordAt(offset)) {
      messages.push(m);
      offset += SPOOL_RECORD_PREFIX_BYTES + m.length;
    }
    return { messages, offset };
  }

  it('follows a spool while it grows, in chunks, with one descriptor', async () => {
    const path = join(dir, 's.spool');
    const writer = closeAfter(await SpoolWriter.open(path));
    const follower = closeAfter(new SpoolFollower(path));
    const first = range(1, 80).map((seq) => frame(seq));
    first.forEach((m) => writer.append(m));
    await writer.sync();
    const a = await follow(follower, SPOOL_HEADER_BYTES);
    expectSameMessages(a.messages, first);
    expect(openFds(path)).toBe(2);

    // Nothing new yet, then more records (one larger than the read-ahead) become readable.
    expect(await follower.recordAt(a.offset)).toBeNull();
    const more = [frame(81), frame(82, 3 * 1024 * 1024), frame(83)];
    more.forEach((m) => writer.append(m));
    await writer.sync();
    const b = await follow(follower, a.offset);
    expectSameMessages(b.messages, more);
    expect(b.offset).toBe(statSync(path).size);

    await follower.close();
    expect(openFds(path)).toBe(1);
    await writer.close();
  });

  it('reads a record that is only partly on disk, or corrupt, as not there yet', async () => {
    const path = join(dir, 's.spool');
    const writer = closeAfter(await SpoolWriter.open(path));
    writer.append(frame(1));
    await writer.close();
    const whole = readFileSync(path);
    const recordBytes = whole.length - SPOOL_HEADER_BYTES;

    writeFileSync(path, whole.subarray(0, whole.length - 10));
    const follower = closeAfter(new SpoolFollower(path));
    expect(await follower.recordAt(SPOOL_HEADER_BYTES)).toBeNull();
    writeFileSync(path, whole);
    expectSameMessages([(await follower.recordAt(SPOOL_HEADER_BYTES)) as Buffer], [frame(1)]);
    await follower.close();

    const corrupt = Buffer.from(whole);
    corrupt[SPOOL_HEADER_BYTES + recordBytes - 1] ^= 0xff;
    writeFileSync(path, corrupt);
    const again = closeAfter(new SpoolFollower(path));
    expect(await again.recordAt(SPOOL_HEADER_BYTES)).toBeNull();
    await again.close();
  });
});
