import type { OpenSettings } from './client.js';

/** What a persistent outbox keeps of a session besides its frames. */
export interface PersistedSession {
  sessionId: string;
  resumeToken: string;
  /** Epoch ms of the session's `pts` 0, so that a restarted client continues its clock. */
  startedAt: number;
  /**
   * The `open` the session began with (absent in outboxes written before codecs, and after
   * `resume()` by id): a reloaded page's capture must encode with the same codec, size and
   * decoder configuration, or the server refuses its chunks.
   */
  settings?: OpenSettings;
}

/** What a persistent outbox held when the client started. */
export interface OutboxSnapshot {
  session: PersistedSession | null;
  /** Unacknowledged media messages (header included), in seq order with no gap. */
  messages: Uint8Array[];
}

/**
 * Durable storage of the outbox: a directory in Node, IndexedDB in browsers. The client calls it
 * once per batch of frames, never per frame, and sends a frame only after the batch holding it is
 * stored, so that a crash loses nothing the app handed over.
 */
export interface OutboxStore {
  load(): Promise<OutboxSnapshot>;
  saveSession(session: PersistedSession): Promise<void>;
  append(messages: readonly Uint8Array[]): Promise<void>;
  /** Forgets every message with seq ≤ `ackedSeq` (it is durably stored by the server). */
  trim(ackedSeq: number): Promise<void>;
  /** The session is closed: forget everything. */
  clear(): Promise<void>;
  /** The client stops without closing: let go of open files or handles, keep the content. */
  release?(): Promise<void>;
}

/** Compact the array once this many acknowledged slots lead it (and they are the majority). */
const COMPACT_AFTER = 1024;

/**
 * The in-memory outbox: media messages from the first unacknowledged seq on, in seq order. Seqs are
 * contiguous, so only the first is stored; an ack is an index move, not a search.
 */
export class Outbox {
  private messages: Uint8Array[] = [];
  private head = 0;
  /** Seq of the first message still held (the next to be acknowledged). */
  firstSeq = 1;
  /** Bytes of the messages held. */
  bytes = 0;

  get depth(): number {
    return this.messages.length - this.head;
  }

  /** Seq the next pushed message gets. */
  get nextSeq(): number {
    return this.firstSeq + this.depth;
  }

  push(message: Uint8Array): void {
    this.messages.push(message);
    this.bytes += message.length;
  }

  /** The message of `seq`, if still held. */
  at(seq: number): Uint8Array | undefined {
    const i = seq - this.firstSeq;
    return i >= 0 && i < this.depth ? this.messages[this.head + i] : undefined;
  }

  /** Drops every message with seq ≤ `seq`; returns how many were dropped. */
  ack(seq: number): number {
    let dropped = 0;
    while (this.head < this.messages.length && this.firstSeq <= seq) {
      this.bytes -= this.messages[this.head].length;
      this.head++;
      this.firstSeq++;
      dropped++;
    }
    if (this.depth === 0 && this.firstSeq <= seq) {
      // The server stored more than we hold (a restart lost nothing it had): continue after it.
      this.firstSeq = seq + 1;
    }
    if (this.head >= COMPACT_AFTER && this.head * 2 >= this.messages.length) {
      this.messages = this.messages.slice(this.head);
      this.head = 0;
    }
    return dropped;
  }

  /** Replaces the content with `messages`, the first of which has seq `firstSeq`. */
  reset(firstSeq: number, messages: Uint8Array[]): void {
    this.messages = messages;
    this.head = 0;
    this.firstSeq = firstSeq;
    this.bytes = messages.reduce((n, m) => n + m.length, 0);
  }
}
