import { mkdir, open, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeFramesBody, FRAME_LENGTH_BYTES } from '../../src/protocol/fallback-framing.js';
import { MEDIA_HEADER_BYTES, readMediaSeq } from '../../src/protocol/media-header.js';
import type { OutboxSnapshot, OutboxStore, PersistedSession } from './outbox.js';

/** A segment is closed and a new one begun past this size, so that acked data can be deleted. */
const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;
const SESSION_FILE = 'session.json';
const SEGMENT = /^seg-(\d{10})\.log$/;

interface Segment {
  path: string;
  lastSeq: number;
  bytes: number;
}

/**
 * The Node outbox: a directory holding `session.json` (written whole, by rename) and append-only
 * segments `seg-<firstSeq>.log` of `u32 length` + media message, the fallback body format. A
 * segment is deleted once every message in it is acknowledged. A record torn by a crash ends its
 * segment's reading. No fsync: the page cache survives a process crash, which is what an outbox is
 * for; a power loss may lose frames sent in the last seconds before it.
 */
export class DirectoryOutboxStore implements OutboxStore {
  private segments: Segment[] = [];
  private current: FileHandle | null = null;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly segmentBytes = DEFAULT_SEGMENT_BYTES,
  ) {}

  load(): Promise<OutboxSnapshot> {
    return this.serial(async () => {
      await mkdir(this.dir, { recursive: true });
      const session = await this.readSession();
      const names = (await readdir(this.dir)).filter((n) => SEGMENT.test(n)).sort();
      const messages: Uint8Array[] = [];
      let lastSeq = 0;
      this.segments = [];
      for (const name of names) {
        const path = join(this.dir, name);
        const data = await readFile(path);
        let segmentLast = 0;
        for (const message of records(data)) {
          const seq = readMediaSeq(message);
          segmentLast = Math.max(segmentLast, seq);
          if (lastSeq === 0 || seq === lastSeq + 1) {
            messages.push(message);
            lastSeq = seq;
          }
        }
        this.segments.push({ path, lastSeq: segmentLast, bytes: data.length });
      }
      return { session, messages };
    });
  }

  saveSession(session: PersistedSession): Promise<void> {
    return this.serial(async () => {
      await mkdir(this.dir, { recursive: true });
      const tmp = join(this.dir, `${SESSION_FILE}.tmp`);
      await writeFile(tmp, JSON.stringify(session));
      await rename(tmp, join(this.dir, SESSION_FILE));
    });
  }

  append(messages: readonly Uint8Array[]): Promise<void> {
    return this.serial(async () => {
      if (messages.length === 0) {
        return;
      }
      const last = this.segments[this.segments.length - 1];
      if (!this.current || !last || last.bytes >= this.segmentBytes) {
        await this.current?.close();
        await mkdir(this.dir, { recursive: true });
        const firstSeq = readMediaSeq(messages[0]);
        const path = join(this.dir, `seg-${String(firstSeq).padStart(10, '0')}.log`);
        this.current = await open(path, 'a');
        this.segments.push({ path, lastSeq: 0, bytes: 0 });
      }
      const body = encodeFramesBody(messages);
      await this.current.write(body);
      const segment = this.segments[this.segments.length - 1];
      segment.bytes += body.length;
      segment.lastSeq = readMediaSeq(messages[messages.length - 1]);
    });
  }

  trim(ackedSeq: number): Promise<void> {
    return this.serial(async () => {
      while (this.segments.length > 0 && this.segments[0].lastSeq <= ackedSeq) {
        const segment = this.segments[0];
        if (this.segments.length === 1) {
          await this.current?.close();
          this.current = null;
        }
        this.segments.shift();
        await unlink(segment.path);
      }
    });
  }

  clear(): Promise<void> {
    return this.serial(async () => {
      await this.current?.close();
      this.current = null;
      this.segments = [];
      await rm(this.dir, { recursive: true, force: true });
    });
  }

  /** Closes the open segment without forgetting anything (the client stops, the outbox stays). */
  release(): Promise<void> {
    return this.serial(async () => {
      await this.current?.close();
      this.current = null;
    });
  }

  private async readSession(): Promise<PersistedSession | null> {
    let text: string;
    try {
      text = await readFile(join(this.dir, SESSION_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return null;
      }
      throw err;
    }
    const parsed = JSON.parse(text) as Partial<PersistedSession>;
    if (
      typeof parsed.sessionId !== 'string' ||
      typeof parsed.resumeToken !== 'string' ||
      typeof parsed.startedAt !== 'number' ||
      (parsed.settings !== undefined &&
        (typeof parsed.settings !== 'object' || typeof parsed.settings?.video !== 'object'))
    ) {
      throw new Error(`${join(this.dir, SESSION_FILE)} is not an outbox session`);
    }
    return {
      sessionId: parsed.sessionId,
      resumeToken: parsed.resumeToken,
      startedAt: parsed.startedAt,
      ...(parsed.settings ? { settings: parsed.settings } : {}),
    };
  }

  /** Runs operations one at a time; each caller gets its own result, the queue survives failures. */
  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.tail.then(op);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

/** The intact records of a segment, in order; a torn record (crash mid-write) ends it. */
function* records(data: Buffer): Generator<Buffer> {
  let offset = 0;
  while (offset + FRAME_LENGTH_BYTES <= data.length) {
    const length = data.readUInt32BE(offset);
    const end = offset + FRAME_LENGTH_BYTES + length;
    if (length <= MEDIA_HEADER_BYTES || end > data.length) {
      return;
    }
    yield data.subarray(offset + FRAME_LENGTH_BYTES, end);
    offset = end;
  }
}
