import { open, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';

/**
 * The append-only session spool: one file per session holding its binary media messages exactly
 * as received, so a `kill -9` after a sync loses nothing. Format: docs/spool-format.md.
 */

/** `FGSPOOL1`, the first 8 bytes of every spool file. */
export const SPOOL_MAGIC = Buffer.from('FGSPOOL1', 'ascii');
export const SPOOL_FORMAT_VERSION = 1;
/** Magic, u32 BE version, u32 BE reserved. */
export const SPOOL_HEADER_BYTES = 16;
/** u32 BE message length, u32 BE CRC-32 of the message. */
export const SPOOL_RECORD_PREFIX_BYTES = 8;
/**
 * Largest message a record may hold: the upper bound of MAX_FRAME_BYTES. Readers treat a larger
 * length as corruption, so a garbage length never makes them allocate gigabytes.
 */
export const SPOOL_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** A session's spool file in `dir` (SPOOL_DIR): the node that writes it and the workers agree. */
export function spoolFileOf(dir: string, sessionId: string): string {
  return join(dir, `${sessionId}.spool`);
}

/** Buffers per writev call: Linux IOV_MAX. */
const IOV_MAX = 1024;
/** Each record is two buffers: its pooled prefix and the caller's message. */
const RECORDS_PER_WRITEV = IOV_MAX / 2;
/** Read-ahead of the scanners; records larger than this are read or checksummed in pieces. */
const READ_CHUNK_BYTES = 1024 * 1024;

const HEADER = Buffer.alloc(SPOOL_HEADER_BYTES);
SPOOL_MAGIC.copy(HEADER, 0);
HEADER.writeUInt32BE(SPOOL_FORMAT_VERSION, 8);
HEADER.writeUInt32BE(0, 12);

/** Offset of the u32 BE `seq` inside a media message (src/protocol/media-header.ts). */
const SEQ_OFFSET = 4;
/** Offset of the u32 BE `pts` (ms) inside a media message. */
const PTS_OFFSET = 8;
/** Offset of the track byte inside a media message: 1 video, 2 audio. */
const TRACK_OFFSET = 1;
const AUDIO_TRACK = 2;

/** One intact record: `offset` is where its prefix starts in the file. */
export interface SpoolRecord {
  offset: number;
  message: Buffer;
}

/** Why a scan stopped before the end of the file. */
export type SpoolTornReason =
  /** The file is shorter than its 16-byte header (crash while creating it). */
  | 'short_header'
  /** Fewer than 8 bytes after the last intact record. */
  | 'short_prefix'
  /** A length of 0 (e.g. a zero-filled tail) or above SPOOL_MAX_MESSAGE_BYTES. */
  | 'bad_length'
  /** The file ends inside the message. */
  | 'short_body'
  | 'crc_mismatch';

export interface SpoolSummary {
  /** Intact records before the end or the first torn/corrupt record. */
  records: number;
  /** Highest `seq` among them (u32 at message offset 4); 0 when there are none. */
  lastSeq: number;
  /** Of the intact records, those on the audio track (byte 1 of the message is 2); the rest are video. */
  audioRecords: number;
  /** Message bytes of the intact records (prefixes and the file header not counted). */
  messageBytes: number;
  /** Highest `pts` among them (u32 at message offset 8); 0 when there are none. */
  highestPts: number;
  /** File offset just past the last intact record (the header counts). */
  validBytes: number;
  /** Bytes after `validBytes`: a torn tail, or whatever follows a corrupt record. */
  tornBytes: number;
  /** Why reading stopped early; null when the file ended cleanly. */
  torn: SpoolTornReason | null;
}

/** What a spool holds, as `SpoolWriter.open` found it. */
export interface SpoolContents {
  records: number;
  audioRecords: number;
  messageBytes: number;
  highestPts: number;
  lastSeq: number;
  truncatedBytes: number;
}

/**
 * Appends one session's media messages to its spool file.
 *
 * Per message `append` only queues a reference; `write` and `sync` send the queue to the file with
 * writev (no concatenation, pooled 8-byte prefixes) and `sync` ends with one fdatasync covering
 * every message appended before it was called. One writer per file: nothing here locks the file
 * against a second process or a second writer.
 *
 * A failed writev or fdatasync is final: after a failed fdatasync the kernel may already have
 * dropped the dirty pages, so retrying could report success for data that is gone. Every later
 * `append`, `write` and `sync` fails with the same error; reopening the file recovers what is intact.
 */
export class SpoolWriter {
  /** Messages appended and not yet handed to a writev; swapped with `spare` by each round. */
  private queue: Buffer[] = [];
  private spare: Buffer[] = [];
  private queuedBytes = 0;
  private inflightBytes = 0;
  /** Written by a round without a fdatasync after it. */
  private unsynced = false;
  /** The round (write, then maybe fdatasync) in progress: at most one per file. */
  private current: { sync: boolean; done: Promise<void> } | undefined;
  /** One round that callers arriving during `current` share; runs as soon as it ends. */
  private next: Deferred | undefined;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  /** Set by discard(): no write starts any more. */
  private discarding = false;
  /**
   * Record prefixes; a slice is reused only after the writev that carried it has completed.
   * Allocated with the first write, so an idle session's writer holds no buffer.
   */
  private prefixPool: Buffer | null = null;
  private readonly prefixViews: Buffer[] = [];
  private readonly iov: Buffer[] = [];

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    /** File offset of the next record. */
    private position: number,
    /**
     * What an existing file held when it was opened: intact records kept (all of them and those
     * of the audio track), their message bytes, their highest seq, and the bytes of torn tail cut
     * off. All zero for a new file.
     */
    readonly recovered: SpoolContents,
  ) {}

  /**
   * Opens `path` for appending. A missing file is created with its header, and the file and its
   * directory are fsync'd before this resolves. An existing file is scanned; a torn tail is
   * truncated (and fsync'd) and appends continue after the last intact record. The directory must
   * exist. The intact records of an existing file are fsync'd before this resolves, so
   * `recovered` reports only what is durable (the way to learn what a failed writer stored).
   * Throws, naming the file, when it is not a spool or has an unknown format version.
   */
  static async open(path: string): Promise<SpoolWriter> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r+');
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') {
        throw err;
      }
      try {
        fh = await open(path, 'wx');
      } catch (createErr) {
        // Another open created it in between: treat it as existing.
        if (errnoCode(createErr) !== 'EEXIST') {
          throw createErr;
        }
        fh = await open(path, 'r+');
        return SpoolWriter.recover(path, fh);
      }
      try {
        await writeFully(fh, HEADER, 0);
        await fh.sync();
        await fsyncDir(dirname(path));
      } catch (initErr) {
        await fh.close();
        throw initErr;
      }
      return new SpoolWriter(path, fh, SPOOL_HEADER_BYTES, {
        records: 0,
        audioRecords: 0,
        messageBytes: 0,
        highestPts: 0,
        lastSeq: 0,
        truncatedBytes: 0,
      });
    }
    return SpoolWriter.recover(path, fh);
  }

  private static async recover(path: string, fh: FileHandle): Promise<SpoolWriter> {
    try {
      const summary = await scan(fh, path);
      if (summary.torn === 'short_header') {
        // Crash between creating the file and its header being durable: start it again. Its
        // directory entry may not be durable either.
        await fh.truncate(0);
        await writeFully(fh, HEADER, 0);
        await fh.sync();
        await fsyncDir(dirname(path));
      } else {
        if (summary.tornBytes > 0) {
          await fh.truncate(summary.validBytes);
        }
        // What `recovered` reports must be on disk, also when a failed fdatasync (ENOSPC, EIO)
        // left the records only in the page cache: fsync rather than fdatasync, since a new size
        // is metadata. One fsync per reopen, which is rare.
        await fh.sync();
      }
      return new SpoolWriter(path, fh, Math.max(summary.validBytes, SPOOL_HEADER_BYTES), {
        records: summary.records,
        audioRecords: summary.audioRecords,
        messageBytes: summary.messageBytes,
        highestPts: summary.highestPts,
        lastSeq: summary.lastSeq,
        truncatedBytes: summary.tornBytes,
      });
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** Message bytes appended and not yet written (queued or inside an unfinished writev). */
  get pendingBytes(): number {
    return this.queuedBytes + this.inflightBytes;
  }

  /**
   * Queues one message (1 byte to SPOOL_MAX_MESSAGE_BYTES) for the next write. Keeps a reference:
   * the caller must not modify the buffer afterwards. Throws once the writer failed or is closing.
   */
  append(message: Buffer): void {
    if (this.failure) {
      throw this.failure;
    }
    if (this.closing) {
      throw this.closedError();
    }
    if (message.length === 0 || message.length > SPOOL_MAX_MESSAGE_BYTES) {
      throw new RangeError(
        `${this.path}: spool message of ${message.length} bytes (allowed 1..${SPOOL_MAX_MESSAGE_BYTES})`,
      );
    }
    this.queue.push(message);
    this.queuedBytes += message.length;
  }

  /**
   * Resolves once every message appended before the call is written and fdatasync'd. Calls made
   * while a round runs share the one round that follows it.
   */
  sync(): Promise<void> {
    return this.closing ? Promise.reject(this.closedError()) : this.request(true);
  }

  /**
   * Writes the queued messages without fdatasync, to bound memory when `pendingBytes` grows;
   * durability still needs `sync()`.
   */
  write(): Promise<void> {
    return this.closing ? Promise.reject(this.closedError()) : this.request(false);
  }

  /**
   * Syncs, then closes the file; later calls return the same promise. Rejects when that last sync
   * fails (the file is closed all the same). On a writer that had already failed it only closes:
   * the failure was reported by the write or sync that hit it.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /**
   * Closes without writing what is still queued: for a node that may no longer write this file
   * (it lost its lease; another node may be appending to it now). Those messages were never
   * acknowledged. A writev already under way completes (it was issued while writing was allowed);
   * no other starts. Later calls of close or discard return the same promise.
   */
  discard(): Promise<void> {
    this.closing ??= this.dropQueued();
    return this.closing;
  }

  private async dropQueued(): Promise<void> {
    this.discarding = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    const next = this.next;
    this.next = undefined;
    next?.reject(this.closedError());
    try {
      await this.current?.done;
    } catch {
      // Its failure was reported to whoever asked for that round.
    } finally {
      await this.fh.close();
    }
  }

  private async shutdown(): Promise<void> {
    try {
      if (!this.failure) {
        await this.request(true);
      }
    } finally {
      await this.fh.close();
    }
  }

  private request(sync: boolean): Promise<void> {
    if (this.failure) {
      return Promise.reject(this.failure);
    }
    const current = this.current;
    if (current) {
      // Nothing appended since the running round took the queue: if it does all that is asked
      // (its fdatasync starts after its writes), waiting for it is enough.
      if (this.queue.length === 0 && (current.sync || !sync)) {
        return current.done;
      }
      this.next ??= deferred();
      this.next.sync ||= sync;
      return this.next.promise;
    }
    if (this.queue.length === 0 && !(sync && this.unsynced)) {
      return Promise.resolve();
    }
    return this.launch(sync);
  }

  private launch(sync: boolean): Promise<void> {
    const done = this.round(sync);
    this.current = { sync, done };
    void done.then(
      () => this.advance(),
      () => this.advance(),
    );
    return done;
  }

  private advance(): void {
    this.current = undefined;
    const next = this.next;
    this.next = undefined;
    if (!next) {
      return;
    }
    if (this.failure) {
      next.reject(this.failure);
      return;
    }
    this.launch(next.sync).then(next.resolve, next.reject);
  }

  private async round(sync: boolean): Promise<void> {
    const batch = this.queue;
    this.queue = this.spare;
    this.inflightBytes = this.queuedBytes;
    this.queuedBytes = 0;
    try {
      for (let start = 0; start < batch.length && !this.discarding; start += RECORDS_PER_WRITEV) {
        await this.writeChunk(batch, start, Math.min(start + RECORDS_PER_WRITEV, batch.length));
        this.unsynced = true;
      }
      if (sync && this.unsynced) {
        // Cleared first: any write after this point is not covered by this fdatasync.
        this.unsynced = false;
        await this.fh.datasync();
      }
    } catch (err) {
      throw this.fail(err);
    } finally {
      batch.length = 0;
      this.spare = batch;
      this.iov.length = 0;
    }
  }

  private async writeChunk(batch: Buffer[], start: number, end: number): Promise<void> {
    const iov = this.iov;
    iov.length = 0;
    let bytes = 0;
    let messageBytes = 0;
    for (let i = start; i < end; i++) {
      const message = batch[i];
      const prefix = this.prefix(i - start);
      prefix.writeUInt32BE(message.length, 0);
      prefix.writeUInt32BE(crc32(message), 4);
      iov.push(prefix, message);
      messageBytes += message.length;
      bytes += SPOOL_RECORD_PREFIX_BYTES + message.length;
    }
    let written = 0;
    let pending: Buffer[] = iov;
    for (;;) {
      // libuv already retries partial writes; a short count here means it hit an error after
      // writing something, which the next call reports (or writes past, if it was transient).
      const { bytesWritten } = await this.fh.writev(pending, this.position);
      this.position += bytesWritten;
      written += bytesWritten;
      if (written === bytes) {
        break;
      }
      if (bytesWritten === 0) {
        throw Object.assign(new Error(`${this.path}: writev wrote 0 of ${bytes - written} bytes`), {
          code: 'EIO',
        });
      }
      pending = unwritten(pending, bytesWritten);
    }
    this.inflightBytes -= messageBytes;
  }

  private prefix(index: number): Buffer {
    let view = this.prefixViews[index];
    if (!view) {
      const at = index * SPOOL_RECORD_PREFIX_BYTES;
      this.prefixPool ??= Buffer.allocUnsafe(RECORDS_PER_WRITEV * SPOOL_RECORD_PREFIX_BYTES);
      view = this.prefixPool.subarray(at, at + SPOOL_RECORD_PREFIX_BYTES);
      this.prefixViews[index] = view;
    }
    return view;
  }

  private fail(err: unknown): Error {
    this.failure ??= err instanceof Error ? err : new Error(`${this.path}: ${String(err)}`);
    // The queued messages can never be written now; let them be collected.
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.inflightBytes = 0;
    return this.failure;
  }

  private closedError(): Error {
    return new Error(`${this.path}: spool writer is closed`);
  }
}

/**
 * Reads every intact record in order, streaming the file with a bounded read-ahead; each yielded
 * message is its own Buffer. Stops at the end or at the first torn/corrupt record, and returns
 * the summary as the generator's result (`for await` discards it: call `next()` by hand, or use
 * `scanSpool`). A file still being written may show its last record as torn. Throws, naming the
 * file, when it is not a spool or has an unknown format version.
 */
export async function* readSpool(path: string): AsyncGenerator<SpoolRecord, SpoolSummary, void> {
  const fh = await open(path, 'r');
  try {
    const scanner = await RecordScanner.start(fh, path, true);
    while (await scanner.next()) {
      yield { offset: scanner.recordOffset, message: scanner.message };
    }
    return scanner.summary();
  } finally {
    await fh.close();
  }
}

/** Like `readSpool` without materialising the messages: only the summary. */
export async function scanSpool(path: string): Promise<SpoolSummary> {
  const fh = await open(path, 'r');
  try {
    return await scan(fh, path);
  } finally {
    await fh.close();
  }
}

async function scan(fh: FileHandle, path: string): Promise<SpoolSummary> {
  const scanner = await RecordScanner.start(fh, path, false);
  while (await scanner.next()) {
    // Only the summary is wanted.
  }
  return scanner.summary();
}

/** Read-ahead of a follower: a few dozen typical frames per read. */
const FOLLOW_CHUNK_BYTES = 1024 * 1024;

/**
 * Follows a spool that is still being appended to, for a reader that lags behind the writer (the
 * recorder catching up): records in order from a given offset, read in chunks of up to 1 MiB, so
 * one read on the thread pool serves many records instead of two per record. The file stays open
 * until `close()`. A record not yet fully on disk reads as `null`: the caller tries again later.
 */
export class SpoolFollower {
  private fh: FileHandle | null = null;
  /** Allocated with the first read: a recorder that never falls behind holds none. */
  private buf: Buffer | null = null;
  /** File offsets held in `buf`. */
  private bufStart = 0;
  private bufEnd = 0;

  constructor(private readonly path: string) {}

  /** The intact record at `offset` (its message is its own copy), or null when it is incomplete. */
  async recordAt(offset: number): Promise<Buffer | null> {
    this.fh ??= await open(this.path, 'r');
    if (!(await this.fill(offset, SPOOL_RECORD_PREFIX_BYTES))) {
      return null;
    }
    const buf = this.buf as Buffer;
    const p = offset - this.bufStart;
    const length = buf.readUInt32BE(p);
    const expected = buf.readUInt32BE(p + 4);
    if (length === 0 || length > SPOOL_MAX_MESSAGE_BYTES) {
      return null;
    }
    const body = offset + SPOOL_RECORD_PREFIX_BYTES;
    let message: Buffer;
    if (length <= FOLLOW_CHUNK_BYTES) {
      if (!(await this.fill(body, length))) {
        return null;
      }
      const b = body - this.bufStart;
      message = Buffer.from((this.buf as Buffer).subarray(b, b + length));
    } else {
      message = Buffer.allocUnsafe(length);
      const { bytesRead } = await this.fh.read(message, 0, length, body);
      if (bytesRead < length) {
        return null;
      }
    }
    return crc32(message) === expected ? message : null;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }

  /** Makes file bytes [at, at + n) available in `buf` (n ≤ its size); false if not all on disk. */
  private async fill(at: number, n: number): Promise<boolean> {
    if (at >= this.bufStart && at + n <= this.bufEnd) {
      return true;
    }
    const fh = this.fh as FileHandle;
    this.buf ??= Buffer.allocUnsafe(FOLLOW_CHUNK_BYTES);
    const { bytesRead } = await fh.read(this.buf, 0, FOLLOW_CHUNK_BYTES, at);
    this.bufStart = at;
    this.bufEnd = at + bytesRead;
    return bytesRead >= n;
  }
}

const NO_MESSAGE = Buffer.alloc(0);

/** Walks the records of an open spool file from its header to the first torn one. */
class RecordScanner {
  private readonly buf = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  /** File offsets held in `buf`. */
  private bufStart = 0;
  private bufEnd = 0;
  /** Offset of the next record to read, i.e. just past the last intact one. */
  private offset = SPOOL_HEADER_BYTES;
  private records = 0;
  private audioRecords = 0;
  private messageBytes = 0;
  private highestPts = 0;
  private lastSeq = 0;
  private torn: SpoolTornReason | null = null;
  /** The record found by the last successful `next()`. */
  recordOffset = 0;
  /** Its message, when the scanner keeps messages. */
  message = NO_MESSAGE;

  private constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    private readonly size: number,
    private readonly keep: boolean,
  ) {}

  static async start(fh: FileHandle, path: string, keep: boolean): Promise<RecordScanner> {
    const size = (await fh.stat()).size;
    const scanner = new RecordScanner(fh, path, size, keep);
    const header = Buffer.alloc(Math.min(size, SPOOL_HEADER_BYTES));
    await readFully(fh, header, 0, path);
    if (size < SPOOL_HEADER_BYTES) {
      // A crash while the file was being created leaves a prefix of the header (often nothing).
      if (!header.equals(HEADER.subarray(0, size))) {
        throw new Error(`${path}: not a framegate spool file (bad magic)`);
      }
      scanner.offset = 0;
      scanner.torn = 'short_header';
    } else if (!header.subarray(0, SPOOL_MAGIC.length).equals(SPOOL_MAGIC)) {
      throw new Error(`${path}: not a framegate spool file (bad magic)`);
    } else if (header.readUInt32BE(8) !== SPOOL_FORMAT_VERSION) {
      throw new Error(
        `${path}: unsupported spool format version ${header.readUInt32BE(8)} (this build reads ${SPOOL_FORMAT_VERSION})`,
      );
    }
    return scanner;
  }

  summary(): SpoolSummary {
    return {
      records: this.records,
      audioRecords: this.audioRecords,
      messageBytes: this.messageBytes,
      highestPts: this.highestPts,
      lastSeq: this.lastSeq,
      validBytes: this.offset,
      tornBytes: this.size - this.offset,
      torn: this.torn,
    };
  }

  /** Reads the next record; false at the end of the file or at a torn/corrupt record. */
  async next(): Promise<boolean> {
    if (this.torn) {
      return false;
    }
    const at = this.offset;
    const left = this.size - at;
    if (left === 0) {
      return false;
    }
    if (left < SPOOL_RECORD_PREFIX_BYTES) {
      return this.stop('short_prefix');
    }
    const p = await this.window(at, SPOOL_RECORD_PREFIX_BYTES);
    const length = this.buf.readUInt32BE(p);
    const expected = this.buf.readUInt32BE(p + 4);
    if (length === 0 || length > SPOOL_MAX_MESSAGE_BYTES) {
      return this.stop('bad_length');
    }
    if (length > left - SPOOL_RECORD_PREFIX_BYTES) {
      return this.stop('short_body');
    }
    const body = at + SPOOL_RECORD_PREFIX_BYTES;
    let crc: number;
    let seq = 0;
    let track = 0;
    let pts = 0;
    let message = NO_MESSAGE;
    if (length <= this.buf.length) {
      const b = await this.window(body, length);
      const view = this.buf.subarray(b, b + length);
      crc = crc32(view);
      if (length >= PTS_OFFSET + 4) {
        seq = view.readUInt32BE(SEQ_OFFSET);
        pts = view.readUInt32BE(PTS_OFFSET);
        track = view[TRACK_OFFSET];
      } else if (length >= SEQ_OFFSET + 4) {
        seq = view.readUInt32BE(SEQ_OFFSET);
        track = view[TRACK_OFFSET];
      }
      if (this.keep && crc === expected) {
        // Its own copy: `buf` is overwritten by the next read-ahead.
        message = Buffer.from(view);
      }
    } else if (this.keep) {
      message = Buffer.allocUnsafe(length);
      await readFully(this.fh, message, body, this.path);
      crc = crc32(message);
      seq = message.readUInt32BE(SEQ_OFFSET);
      pts = message.readUInt32BE(PTS_OFFSET);
      track = message[TRACK_OFFSET];
    } else {
      // Checksummed piece by piece: a scan never holds more than the read-ahead.
      crc = 0;
      for (let pos = body, end = body + length; pos < end;) {
        const n = Math.min(this.buf.length, end - pos);
        const b = await this.window(pos, n);
        const piece = this.buf.subarray(b, b + n);
        if (pos === body) {
          seq = piece.readUInt32BE(SEQ_OFFSET);
          pts = piece.readUInt32BE(PTS_OFFSET);
          track = piece[TRACK_OFFSET];
        }
        crc = crc32(piece, crc);
        pos += n;
      }
    }
    if (crc !== expected) {
      return this.stop('crc_mismatch');
    }
    this.recordOffset = at;
    this.message = message;
    this.offset = body + length;
    this.records++;
    this.messageBytes += length;
    if (track === AUDIO_TRACK) {
      this.audioRecords++;
    }
    if (pts > this.highestPts) {
      this.highestPts = pts;
    }
    if (seq > this.lastSeq) {
      this.lastSeq = seq;
    }
    return true;
  }

  private stop(reason: SpoolTornReason): false {
    this.torn = reason;
    this.message = NO_MESSAGE;
    return false;
  }

  /** Makes file bytes [at, at + n) available in `buf` (n ≤ its size); returns their index. */
  private async window(at: number, n: number): Promise<number> {
    if (at >= this.bufStart && at + n <= this.bufEnd) {
      return at - this.bufStart;
    }
    const want = Math.min(this.buf.length, this.size - at);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await this.fh.read(this.buf, got, want - got, at + got);
      if (bytesRead === 0) {
        throw new Error(`${this.path}: file shrank while being read (offset ${at + got})`);
      }
      got += bytesRead;
    }
    this.bufStart = at;
    this.bufEnd = at + got;
    return 0;
  }
}

interface Deferred {
  sync: boolean;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { sync: false, promise, resolve, reject };
}

/** The buffers left after the first `n` bytes of `bufs` were written; views, not copies. */
function unwritten(bufs: Buffer[], n: number): Buffer[] {
  let i = 0;
  let skip = n;
  while (skip >= bufs[i].length) {
    skip -= bufs[i].length;
    i++;
  }
  const rest = bufs.slice(i);
  rest[0] = rest[0].subarray(skip);
  return rest;
}

async function writeFully(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length;) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    if (bytesWritten === 0) {
      throw new Error(`write returned 0 bytes at offset ${position + done}`);
    }
    done += bytesWritten;
  }
}

async function readFully(
  fh: FileHandle,
  into: Buffer,
  position: number,
  path: string,
): Promise<void> {
  for (let done = 0; done < into.length;) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) {
      throw new Error(`${path}: file shrank while being read (offset ${position + done})`);
    }
    done += bytesRead;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}
