import { join } from 'node:path';
import { Pool } from 'pg';
import type { FramegateClient } from '../client/src/client';
import { createNodeClient } from '../client/src/node';
import { encodeMediaMessage, readMediaHeader, Track } from '../src/protocol/media-header';
import type { Opened } from '../src/protocol/open-session.schema';
import { readSpool, scanSpool } from '../src/spool/spool';
import { Canary, expectAcksTimely, expectRecordingComplete } from './support/canary';
import { Cluster } from './support/cluster';
import { postFrames } from './support/frames-body';
import { jpegFrames, probe } from './support/media';
import { stopServices } from './support/service-process';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

jest.setTimeout(300_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

/**
 * Sessions on a 3-node cluster behind nginx (round robin, no stickiness), sharing one Postgres
 * and one spool directory: resume on any node after a kill -9, takeover from a live node, and
 * the adoption of a dead node's sessions (issue 15, Deliver 4).
 */
describe('cluster: sessions resume on any node', () => {
  let cluster: Cluster;
  let db: Pool;
  let jpegs: Buffer[];
  const token = hsToken({ sub: 'teller', channel: 'branch' });
  const video = { video: { width: 320, height: 240, fps: 10 } };
  const clients: FramegateClient[] = [];

  beforeAll(async () => {
    [cluster, jpegs] = await Promise.all([
      Cluster.start({
        nodes: 3,
        env: {
          // Spools stay after the recording is ready, to count what was stored.
          KEEP_SPOOL: 'true',
          RESUME_WINDOW_MS: '8000',
          CLUSTER_REQUEST_TIMEOUT_MS: '1000',
        },
      }),
      jpegFrames(320, 240, 10),
    ]);
    db = new Pool({ connectionString: cluster.pg.url });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.stop()));
    // A test that killed a node leaves the cluster whole for the next one.
    for (let i = 0; i < cluster.nodes.length; i++) {
      const { child } = cluster.nodes[i].service;
      if (child.exitCode !== null || child.signalCode !== null) {
        await cluster.startNode(i);
      }
    }
  });
  afterAll(async () => {
    await db?.end();
    await cluster?.stop();
    await stopServices();
  });

  async function ownerOf(sessionId: string): Promise<string> {
    const r = await db.query<{ node: string }>(`SELECT node FROM sessions WHERE id = $1`, [
      sessionId,
    ]);
    return r.rows[0].node;
  }

  /**
   * Sends frames `from`..`to` at 10 fps (frame n has pts (n - 1) × 100) until done or the socket
   * closes; resolves with the last seq sent.
   */
  async function pace(c: StreamClient, from: number, to: number): Promise<number> {
    let sent = from - 1;
    for (let seq = from; seq <= to; seq++) {
      if (c.ws.readyState !== c.ws.OPEN) {
        break;
      }
      c.sendFrame(seq, (seq - 1) * 100, jpegs[seq % 10]);
      sent = seq;
      await sleep(100);
    }
    return sent;
  }

  /**
   * Resumes a session at `base` as a client does: a refusal that says "try again" (1013 while
   * the owner's fate is not known yet, 1012) is retried after a short backoff.
   */
  async function resumeAt(
    base: string,
    opened: Pick<Opened, 'sessionId' | 'resumeToken'>,
  ): Promise<{ client: StreamClient; resumed: Opened; retries: number }> {
    for (let retries = 0; retries < 30; retries++) {
      const c = await StreamClient.connect(base, { token }).catch(() => null);
      if (c) {
        c.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: opened.resumeToken });
        const resumed = await c.next('opened', 30_000).catch(() => null);
        if (resumed) {
          return { client: c, resumed, retries };
        }
        const { code } = await c.closed;
        expect([1012, 1013]).toContain(code);
      }
      await sleep(250);
    }
    throw new Error(`session ${opened.sessionId} not resumed`);
  }

  /** The spool holds seqs 1..n once each, in order; the recording decodes to n frames. */
  async function expectEveryFrameOnce(sessionId: string, frames: number): Promise<void> {
    const path = join(cluster.spoolDir, `${sessionId}.spool`);
    const seqs: number[] = [];
    for await (const record of readSpool(path)) {
      const header = readMediaHeader(record.message);
      if (typeof header === 'string') {
        throw new Error(`bad header in spool: ${header}`);
      }
      seqs.push(header.seq);
    }
    expect(seqs).toEqual(range(1, frames));
    expect((await scanSpool(path)).records).toBe(frames);
    const rec = await db.query<{ status: string; frame_count: number; path: string }>(
      `SELECT status, frame_count, path FROM recordings WHERE session_id = $1`,
      [sessionId],
    );
    expect(rec.rows[0]).toMatchObject({ status: 'ready', frame_count: frames });
    expect(rec.rows[0].path.startsWith(cluster.recordingsDir)).toBe(true);
    expect((await probe(rec.rows[0].path)).videoFrames).toBe(frames);
  }

  it('resumes through nginx on another node after its node is killed with -9: every acknowledged frame recorded once, a canary on another node acked on time', async () => {
    const canary = await Canary.start(cluster.node('node-b').url, {
      token: hsToken({ sub: 'canary', channel: 'canary' }),
    });
    await waitFor(() => canary.sent >= 30, 30_000, 'canary warm');
    canary.mark();
    await waitFor(() => canary.sent >= 60, 30_000, 'canary alone');
    const alone = canary.mark();

    const first = await StreamClient.connect(cluster.node('node-a').url, { token });
    const opened = await first.open(video);
    expect(await ownerOf(opened.sessionId)).toBe('node-a');
    const sending = pace(first, 1, 10_000);
    await first.acksUntil(20);
    await cluster.kill('node-a');
    const sentToA = await sending;
    const ackedByA = first.maxAck;
    expect((await first.closed).code).toBe(1006);

    const { client: second, resumed } = await resumeAt(cluster.url, opened);
    // Nothing acknowledged is lost; what A stored beyond its last ack counts too.
    expect(resumed.lastSeq).toBeGreaterThanOrEqual(ackedByA);
    expect(resumed.lastSeq).toBeLessThanOrEqual(sentToA);
    const landed = await ownerOf(opened.sessionId);
    expect(['node-b', 'node-c']).toContain(landed);

    const last = resumed.lastSeq + 30;
    await pace(second, resumed.lastSeq + 1, last);
    await second.acksUntil(last);
    second.send({ type: 'close' });
    const closed = await second.next('closed', 60_000);
    expect((await second.closed).code).toBe(1000);
    expect(closed.frames).toBe(last);
    expect(closed.recording.status).toBe('ready');
    await expectEveryFrameOnce(opened.sessionId, closed.frames);
    const row = await db.query<{ status: string; last_seq: string; video_frames: string }>(
      `SELECT status, last_seq, video_frames FROM sessions WHERE id = $1`,
      [opened.sessionId],
    );
    expect(row.rows[0]).toEqual({
      status: 'closed',
      last_seq: String(last),
      video_frames: String(last),
    });

    const beside = canary.mark();
    expectAcksTimely(alone, beside);
    const { closedFrames } = await canary.stop();
    expect(closedFrames).toBe(canary.sent);
    await expectRecordingComplete(db, canary.sessionId, canary.sent);
  });

  it('takes a session over from a live node: its connection there closes with 4009, the new node goes on with the same spool and recording', async () => {
    const first = await StreamClient.connect(cluster.node('node-a').url, { token });
    const opened = await first.open(video);
    await pace(first, 1, 20);
    await first.acksUntil(20);

    const second = await StreamClient.connect(cluster.node('node-b').url, { token });
    second.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: opened.resumeToken });
    const resumed = await second.next('opened');
    expect((await first.closed).code).toBe(4009);
    expect(resumed.lastSeq).toBe(20);
    expect(await ownerOf(opened.sessionId)).toBe('node-b');

    await pace(second, 21, 40);
    await second.acksUntil(40);
    second.send({ type: 'close' });
    const closed = await second.next('closed', 60_000);
    expect(closed.frames).toBe(40);
    expect(closed.recording.status).toBe('ready');
    await expectEveryFrameOnce(opened.sessionId, 40);

    const events = await db.query<{ type: string; detail: { cause?: string } }>(
      `SELECT type, detail FROM session_events WHERE session_id = $1 ORDER BY at`,
      [opened.sessionId],
    );
    expect(events.rows).toContainEqual(
      expect.objectContaining({
        type: 'handed_off',
        detail: expect.objectContaining({ cause: 'taken_over_by_node-b' }),
      }),
    );
  });

  it('takes a session over through the HTTP fallback: the first call with X-Resume-Token on another node closes the WebSocket there with 4009 and stores its batch', async () => {
    const first = await StreamClient.connect(cluster.node('node-a').url, { token });
    const opened = await first.open(video);
    await pace(first, 1, 10);
    await first.acksUntil(10);

    const parts: Buffer[] = [];
    for (const seq of range(11, 20)) {
      const message = encodeMediaMessage(Track.Video, seq, (seq - 1) * 100, jpegs[seq % 10]);
      const length = Buffer.alloc(4);
      length.writeUInt32BE(message.length);
      parts.push(length, message);
    }
    const node = cluster.node('node-c').url;
    const res = await postFrames(
      node,
      opened.sessionId,
      token,
      opened.resumeToken,
      Buffer.concat(parts),
    );
    expect(res).toMatchObject({ status: 200, body: { ack: 20 } });
    expect((await first.closed).code).toBe(4009);
    expect(await ownerOf(opened.sessionId)).toBe('node-c');

    const closed = await fetch(`${node}/v1/sessions/${opened.sessionId}/close`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'x-resume-token': opened.resumeToken },
    });
    expect(closed.status).toBe(200);
    expect(((await closed.json()) as { frames: number }).frames).toBe(20);
    await expectEveryFrameOnce(opened.sessionId, 20);
  });

  it('a node paused past its lease writes nothing more once it runs again: it closes its connection with 1012, the node that took the session over stays the one writer', async () => {
    const a = cluster.node('node-a');
    const first = await StreamClient.connect(a.url, { token });
    const opened = await first.open(video);
    await pace(first, 1, 20);
    await first.acksUntil(20);
    const group = -(a.service.child.pid as number);
    process.kill(group, 'SIGSTOP');
    try {
      // These wait in the paused node's socket: it reads them before it notices its lapse.
      for (const seq of range(21, 25)) {
        first.sendFrame(seq, (seq - 1) * 100, jpegs[seq % 10]);
      }
      const { client: second, resumed } = await resumeAt(cluster.node('node-b').url, opened);
      expect(resumed.lastSeq).toBe(20);
      await pace(second, 21, 40);
      await second.acksUntil(40);

      process.kill(group, 'SIGCONT');
      expect((await first.closed).code).toBe(1012);
      await waitFor(
        async () => {
          const r = await db.query(
            `SELECT 1 FROM session_events
             WHERE session_id = $1 AND type = 'handed_off' AND detail->>'cause' = 'node_lease_lapsed'`,
            [opened.sessionId],
          );
          return r.rowCount === 1;
        },
        30_000,
        'the paused node letting go of the session',
      );
      second.send({ type: 'close' });
      const closed = await second.next('closed', 60_000);
      expect(closed.frames).toBe(40);
      await expectEveryFrameOnce(opened.sessionId, 40);
    } finally {
      process.kill(group, 'SIGCONT');
    }
  });

  it('a wrong resume token does not make the owner let go', async () => {
    const first = await StreamClient.connect(cluster.node('node-a').url, { token });
    const opened = await first.open(video);
    await pace(first, 1, 5);
    await first.acksUntil(5);
    const intruder = await StreamClient.connect(cluster.node('node-c').url, { token });
    intruder.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: 'x'.repeat(40) });
    expect((await intruder.closed).code).toBe(4004);
    expect(await ownerOf(opened.sessionId)).toBe('node-a');
    await pace(first, 6, 10);
    await first.acksUntil(10);
    first.send({ type: 'close' });
    expect((await first.next('closed', 60_000)).frames).toBe(10);
  });

  it("finalizes a dead node's session on another node once its resume window passes", async () => {
    const c = await StreamClient.connect(cluster.node('node-c').url, { token });
    const opened = await c.open(video);
    await pace(c, 1, 15);
    await c.acksUntil(15);
    await cluster.kill('node-c');

    // Adopted: recorded as lost at node-c's last heartbeat, but its window counted from the
    // adoption, since no node could take it back before node-c counted dead.
    await waitFor(
      async () => (await ownerOf(opened.sessionId)) !== 'node-c',
      60_000,
      'the session adopted by another node',
    );
    const adopted = await db.query<{
      interrupted_at: Date;
      heartbeat_at: Date;
      lost_at: string;
    }>(
      `SELECT s.interrupted_at, n.heartbeat_at, s.status_history -> -1 ->> 'at' AS lost_at
         FROM sessions s, nodes n WHERE s.id = $1 AND n.id = 'node-c'`,
      [opened.sessionId],
    );
    const { interrupted_at, heartbeat_at, lost_at } = adopted.rows[0];
    expect(Math.abs(new Date(lost_at).getTime() - heartbeat_at.getTime())).toBeLessThanOrEqual(1);
    expect(interrupted_at.getTime()).toBeGreaterThanOrEqual(heartbeat_at.getTime() + 1500);

    await waitFor(
      async () => {
        const r = await db.query<{ status: string }>(`SELECT status FROM sessions WHERE id = $1`, [
          opened.sessionId,
        ]);
        return r.rows[0].status === 'abandoned';
      },
      60_000,
      'the session abandoned by another node',
    );
    const row = await db.query<{
      node: string;
      last_seq: string;
      video_frames: string;
      status_history: Array<{ status: string; cause: string }>;
    }>(`SELECT node, last_seq, video_frames, status_history FROM sessions WHERE id = $1`, [
      opened.sessionId,
    ]);
    expect(['node-a', 'node-b']).toContain(row.rows[0].node);
    expect(row.rows[0]).toMatchObject({ last_seq: '15', video_frames: '15' });
    expect(row.rows[0].status_history.map((h) => `${h.status}:${h.cause}`)).toEqual([
      'open:opened',
      'interrupted:node_lost',
      'abandoned:resume_window_passed',
    ]);
    await waitFor(
      async () => {
        const r = await db.query<{ status: string }>(
          `SELECT status FROM recordings WHERE session_id = $1`,
          [opened.sessionId],
        );
        return r.rows[0]?.status === 'ready';
      },
      60_000,
      'the recording finalized',
    );
    await expectEveryFrameOnce(opened.sessionId, 15);
  });

  it('the SDK reconnecting through nginx after its node is killed resumes with nothing lost', async () => {
    const FRAMES = 80;
    const c = createNodeClient({
      url: cluster.url,
      token,
      reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
    });
    clients.push(c);
    const opened = await c.open({ params: { transactionId: 'TX-cluster' }, ...video });
    const owner = await ownerOf(opened.sessionId);
    const sending = (async () => {
      for (const n of range(1, FRAMES)) {
        expect(await c.send(jpegs[n % 10], Track.Video, (n - 1) * 100)).toBe(n);
        await sleep(25);
      }
    })();
    await waitFor(() => c.stats().ackedSeq >= 30, 30_000, 'ack 30');
    await cluster.kill(owner);
    await sending;
    const closed = await c.close();
    expect(closed.frames).toBe(FRAMES);
    expect(await ownerOf(opened.sessionId)).not.toBe(owner);
    await expectEveryFrameOnce(opened.sessionId, FRAMES);
  });
});
