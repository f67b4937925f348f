import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  FLAG_KEY,
  readMediaHeader,
  readMediaSeq,
  Track,
  writeMediaHeader,
} from '../../src/protocol/media-header';
import { DirectoryOutboxStore } from './directory-outbox.store';
import { Outbox } from './outbox';

function message(seq: number, size = 100): Uint8Array {
  const m = new Uint8Array(12 + size).fill(seq % 251);
  writeMediaHeader(m, Track.Video, seq, seq * 100);
  return m;
}

describe('Outbox', () => {
  it('holds messages from the first unacknowledged seq and drops them by cumulative ack', () => {
    const outbox = new Outbox();
    for (let seq = 1; seq <= 5000; seq++) {
      outbox.push(message(seq));
    }
    expect(outbox.ack(3000)).toBe(3000);
    expect(outbox.firstSeq).toBe(3001);
    expect(outbox.depth).toBe(2000);
    expect(outbox.bytes).toBe(2000 * 112);
    expect(readMediaSeq(outbox.at(3001)!)).toBe(3001);
    expect(outbox.at(3000)).toBeUndefined();
    expect(outbox.ack(2999)).toBe(0);
    expect(outbox.nextSeq).toBe(5001);
  });

  it('continues after the server ack when it stored more than the outbox holds', () => {
    const outbox = new Outbox();
    outbox.reset(10, [message(10), message(11)]);
    expect(outbox.ack(20)).toBe(2);
    expect(outbox.depth).toBe(0);
    expect(outbox.nextSeq).toBe(21);
  });
});

describe('DirectoryOutboxStore', () => {
  let dir: string;
  beforeEach(() => {
    dir = join(mkdtempSync(join(tmpdir(), 'framegate-outbox-')), 'outbox');
  });
  afterEach(() => rmSync(join(dir, '..'), { recursive: true, force: true }));

  it('gives back the session and every appended message after a restart', async () => {
    const first = new DirectoryOutboxStore(dir);
    expect(await first.load()).toEqual({ session: null, messages: [] });
    await first.saveSession({ sessionId: 's', resumeToken: 'r'.repeat(30), startedAt: 42 });
    await first.append([message(1), message(2)]);
    await first.append([message(3)]);
    await first.release();

    const second = await new DirectoryOutboxStore(dir).load();
    expect(second.session).toEqual({ sessionId: 's', resumeToken: 'r'.repeat(30), startedAt: 42 });
    expect(second.messages.map(readMediaSeq)).toEqual([1, 2, 3]);
    expect(Buffer.from(second.messages[2]).equals(Buffer.from(message(3)))).toBe(true);
  });

  it('deletes segments once every message in them is acknowledged, never one with unacked frames', async () => {
    const store = new DirectoryOutboxStore(dir, 1000);
    for (let seq = 1; seq <= 30; seq += 3) {
      await store.append([message(seq), message(seq + 1), message(seq + 2)]);
    }
    const segments = () => readdirSync(dir).filter((n) => n.startsWith('seg-')).length;
    const before = segments();
    expect(before).toBeGreaterThan(2);
    await store.trim(14);
    expect(segments()).toBeLessThan(before);
    const left = await new DirectoryOutboxStore(dir).load();
    expect(readMediaSeq(left.messages[0])).toBeLessThanOrEqual(15);
    expect(readMediaSeq(left.messages[left.messages.length - 1])).toBe(30);
    await store.trim(30);
    expect(segments()).toBe(0);
    await store.append([message(31)]);
    expect((await new DirectoryOutboxStore(dir).load()).messages.map(readMediaSeq)).toEqual([31]);
  });

  it('ignores a record torn by a crash at the end of a segment', async () => {
    const store = new DirectoryOutboxStore(dir);
    await store.append([message(1), message(2)]);
    await store.release();
    const [segment] = readdirSync(dir).filter((n) => n.startsWith('seg-'));
    truncateSync(join(dir, segment), statSync(join(dir, segment)).size - 5);
    expect((await new DirectoryOutboxStore(dir).load()).messages.map(readMediaSeq)).toEqual([1]);
  });

  it('keeps the session settings and the key flags of compressed chunks across a restart', async () => {
    const settings = {
      video: { width: 640, height: 480, codec: 'avc1.42001f', description: 'AUIAH/8=' },
    };
    const key = message(1);
    writeMediaHeader(key, Track.Video, 1, 0, FLAG_KEY);
    const first = new DirectoryOutboxStore(dir);
    await first.saveSession({ sessionId: 's', resumeToken: 'r', startedAt: 7, settings });
    await first.append([key, message(2)]);
    await first.release();

    const second = await new DirectoryOutboxStore(dir).load();
    expect(second.session).toEqual({ sessionId: 's', resumeToken: 'r', startedAt: 7, settings });
    const header = readMediaHeader(Buffer.from(second.messages[0]));
    expect(header).toMatchObject({ seq: 1, key: true });
    expect(readMediaHeader(Buffer.from(second.messages[1]))).toMatchObject({ seq: 2, key: false });
  });

  it('forgets everything on clear', async () => {
    const store = new DirectoryOutboxStore(dir);
    await store.saveSession({ sessionId: 's', resumeToken: 't', startedAt: 1 });
    await store.append([message(1)]);
    await store.clear();
    expect(await new DirectoryOutboxStore(dir).load()).toEqual({ session: null, messages: [] });
  });
});
