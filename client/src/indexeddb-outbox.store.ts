import { readMediaSeq } from '../../src/protocol/media-header.js';
import type { OutboxSnapshot, OutboxStore, PersistedSession } from './outbox.js';

const FRAMES = 'frames';
const SESSION = 'session';
const SESSION_KEY = 'current';

/**
 * The browser outbox: an IndexedDB database with the media messages keyed by seq and the session
 * (id, resume token, clock) under one key. One transaction per batch of frames; a page reload or a
 * tab crash leaves both for the next page, which resumes the session.
 */
export class IndexedDbOutboxStore implements OutboxStore {
  private db: Promise<IDBDatabase> | null = null;

  /** `name` tells apart the outboxes of several sessions on one origin (e.g. one per camera). */
  constructor(private readonly name = 'framegate-outbox') {}

  async load(): Promise<OutboxSnapshot> {
    const db = await this.open();
    const tx = db.transaction([FRAMES, SESSION], 'readonly');
    const [session, messages] = await Promise.all([
      request<PersistedSession | undefined>(tx.objectStore(SESSION).get(SESSION_KEY)),
      request<Uint8Array[]>(tx.objectStore(FRAMES).getAll()),
    ]);
    const contiguous: Uint8Array[] = [];
    for (const message of messages) {
      const seq = readMediaSeq(message);
      if (contiguous.length > 0 && seq !== readMediaSeq(contiguous[contiguous.length - 1]) + 1) {
        break;
      }
      contiguous.push(message);
    }
    return { session: session ?? null, messages: contiguous };
  }

  async saveSession(session: PersistedSession): Promise<void> {
    const db = await this.open();
    const tx = db.transaction(SESSION, 'readwrite');
    tx.objectStore(SESSION).put(session, SESSION_KEY);
    await done(tx);
  }

  async append(messages: readonly Uint8Array[]): Promise<void> {
    const db = await this.open();
    const tx = db.transaction(FRAMES, 'readwrite');
    const store = tx.objectStore(FRAMES);
    for (const message of messages) {
      store.put(message, readMediaSeq(message));
    }
    await done(tx);
  }

  async trim(ackedSeq: number): Promise<void> {
    const db = await this.open();
    const tx = db.transaction(FRAMES, 'readwrite');
    tx.objectStore(FRAMES).delete(IDBKeyRange.upperBound(ackedSeq));
    await done(tx);
  }

  async clear(): Promise<void> {
    const db = await this.open();
    const tx = db.transaction([FRAMES, SESSION], 'readwrite');
    tx.objectStore(FRAMES).clear();
    tx.objectStore(SESSION).clear();
    await done(tx);
  }

  async release(): Promise<void> {
    const db = this.db;
    this.db = null;
    (await db)?.close();
  }

  private open(): Promise<IDBDatabase> {
    this.db ??= new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open(this.name, 1);
      req.onupgradeneeded = () => {
        req.result.createObjectStore(FRAMES);
        req.result.createObjectStore(SESSION);
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error ?? new Error(`cannot open IndexedDB ${this.name}`));
    });
    return this.db;
  }
}

function request<T>(req: IDBRequest): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    req.onsuccess = () => resolve(req.result as T);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}
