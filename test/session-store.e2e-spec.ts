import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../src/database/data-source-options';
import { SessionStore } from '../src/sessions/session-store.service';
import { createTestDatabase, dropTestDatabase } from './support/test-db';

describe('SessionStore on real Postgres', () => {
  let url: string;
  let db: DataSource;
  let store: SessionStore;

  beforeAll(async () => {
    url = await createTestDatabase();
    db = await new DataSource(
      dataSourceOptions({ url, poolMax: 2, nodeId: 'store-test' }),
    ).initialize();
    store = new SessionStore(db);
  });
  afterAll(async () => {
    await db.destroy();
    await dropTestDatabase(url);
  });

  async function insertSession(node: string, status: string): Promise<string> {
    const id = randomUUID();
    await db.query(
      `INSERT INTO sessions (id, subject, channel, status, video, resume_token_hash, node)
       VALUES ($1, 'alice', 'branch-app', $2, '{"width":640,"height":480,"fps":10}', 'h', $3)`,
      [id, status, node],
    );
    return id;
  }

  it('interrupts no session on a fresh database and says so (no [rows, count] pair as ids)', async () => {
    // toEqual([]) would pass on [undefined, undefined]: the length is what the start log prints.
    expect(await store.interruptOrphans('fresh-node')).toHaveLength(0);
  });

  it("interrupts exactly this node's open sessions and returns their ids", async () => {
    const a = await insertSession('node-a', 'open');
    const b = await insertSession('node-a', 'open');
    await insertSession('node-a', 'closed');
    await insertSession('node-b', 'open');

    const ids = await store.interruptOrphans('node-a');

    expect([...ids].sort()).toEqual([a, b].sort());
    const rows = await db.query<Array<{ status: string }>>(
      `SELECT status FROM sessions WHERE id = ANY($1::uuid[])`,
      [[a, b]],
    );
    expect(rows.map((r) => r.status)).toEqual(['interrupted', 'interrupted']);
  });

  it('writes a recount only while the session is still in the given states', async () => {
    const interrupted = await insertSession('node-c', 'interrupted');
    const abandoned = await insertSession('node-c', 'abandoned');
    const counts = { lastSeq: 9, videoFrames: 8, audioFrames: 0, rejectedFrames: 1, bytesIn: 900 };
    await store.saveStats(
      [
        { id: interrupted, ...counts },
        { id: abandoned, ...counts },
      ],
      ['interrupted'],
    );
    const rows = await db.query<Array<{ id: string; last_seq: string }>>(
      `SELECT id, last_seq FROM sessions WHERE id = ANY($1::uuid[])`,
      [[interrupted, abandoned]],
    );
    const lastSeq = new Map(rows.map((r) => [r.id, Number(r.last_seq)]));
    // The abandoned session's end recount stands; the interrupted one takes the recount.
    expect(lastSeq.get(interrupted)).toBe(9);
    expect(lastSeq.get(abandoned)).toBe(0);
  });
});
