import { Client } from 'pg';
import { Cluster } from './support/cluster';
import { stopServices } from './support/service-process';
import { rejectedHandshake, StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

jest.setTimeout(240_000);

const CHANNEL = 'cluster-quota';

/**
 * Three nodes on one Postgres behind nginx: the channel limit holds across them (connection
 * leases), and kicks and pushes reach the node that holds the connection.
 */
describe('cluster-wide quotas and routing', () => {
  let cluster: Cluster;
  let db: Client;
  const admin = hsToken({ sub: 'ops', scope: 'admin' });
  const token = hsToken({ sub: 'kiosk-1', channel: CHANNEL });
  const clients: StreamClient[] = [];

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, env: { QUOTA_REFRESH_MS: '200' } });
    db = new Client({ connectionString: cluster.pg.url });
    await db.connect();
    const res = await fetch(`${cluster.url}/v1/admin/channels/${CHANNEL}/quota`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ maxConnections: 3 }),
    });
    expect(res.status).toBe(200);
    // Every node applies the override within QUOTA_REFRESH_MS.
    for (const node of cluster.nodes) {
      await waitFor(
        async () =>
          (await api(node.url, `/v1/admin/channels/${CHANNEL}/quota`)).body.effective
            ?.maxConnections === 3,
        10_000,
        `${node.id} sees the override`,
      );
    }
  });

  afterAll(async () => {
    for (const c of clients) {
      c.ws.terminate();
    }
    await db?.end();
    await cluster?.stop();
    await stopServices();
  });

  async function api(
    base: string,
    path: string,
    init: RequestInit = {},
  ): Promise<{ status: number; body: any }> {
    const res = await fetch(`${base}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${admin}`, ...init.headers },
    });
    return { status: res.status, body: await res.json() };
  }

  async function connect(base: string, sub = 'kiosk-1'): Promise<StreamClient> {
    const client = await StreamClient.connect(base, {
      token: sub === 'kiosk-1' ? token : hsToken({ sub, channel: CHANNEL }),
    });
    clients.push(client);
    return client;
  }

  async function leaseCount(where = 'true'): Promise<number> {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM connection_leases WHERE ${where}`,
    );
    return rows[0].n;
  }

  /** The channel's connection count as every node's admin API sees it. */
  async function clusterCount(): Promise<number> {
    const { body } = await api(cluster.url, '/v1/admin/stats');
    const stats = body as { cluster: { connectionsByChannel: Record<string, number> } };
    return stats.cluster.connectionsByChannel[CHANNEL] ?? 0;
  }

  async function closeAll(): Promise<void> {
    const open = clients.splice(0);
    for (const c of open) {
      c.ws.close();
    }
    await Promise.all(open.map((c) => c.closed));
    await waitFor(async () => (await leaseCount()) === 0, 10_000, 'no lease left');
  }

  it('holds a channel limit of 3 across the nodes: the 4th gets 429 whichever node it reaches', async () => {
    for (let i = 0; i < 3; i++) {
      await connect(cluster.url);
    }
    const { rows } = await db.query<{ node: string }>(
      `SELECT DISTINCT node FROM connection_leases`,
    );
    // Round robin without stickiness: the three landed on more than one node.
    expect(rows.length).toBeGreaterThan(1);
    const viaNginx = await rejectedHandshake(cluster.url, { token });
    expect(viaNginx.status).toBe(429);
    expect(viaNginx.body).toMatchObject({ error: 'quota_exceeded' });
    for (const node of cluster.nodes) {
      const refused = await rejectedHandshake(node.url, { token });
      expect(refused.status).toBe(429);
      expect(refused.headers['retry-after']).toBe('2');
      expect(refused.body.message).toContain('limit of 3 concurrent connections');
    }
    expect(await clusterCount()).toBe(3);
    const list = await api(cluster.url, '/v1/admin/connections');
    expect(list.body.items).toHaveLength(3);
    const items = list.body.items as Array<{ node: string }>;
    expect(new Set(items.map((i) => i.node)).size).toBe(rows.length);

    // A closed connection frees its slot for the next, on any node.
    const first = clients.shift();
    first?.ws.close();
    await first?.closed;
    await waitFor(async () => (await leaseCount()) === 2, 10_000, 'the closed lease deleted');
    await connect(cluster.node('node-c').url);
    expect((await rejectedHandshake(cluster.node('node-a').url, { token })).status).toBe(429);
    await closeAll();
  });

  it('never admits more than the limit when many handshakes arrive at once over 3 nodes', async () => {
    const attempts = await Promise.allSettled(
      Array.from({ length: 24 }, (_, i) => connect(cluster.nodes[i % 3].url, `burst-${i}`)),
    );
    expect(attempts.filter((a) => a.status === 'fulfilled')).toHaveLength(3);
    for (const a of attempts) {
      if (a.status === 'rejected') {
        expect(String(a.reason)).toContain('429');
      }
    }
    expect(await leaseCount()).toBe(3);
    await closeAll();
  });

  it('kicks a connection held on node A from node C with 4003, audited with the admin', async () => {
    const held = await connect(cluster.node('node-a').url);
    const [lease] = (
      await db.query<{ id: string; node: string }>(`SELECT id, node FROM connection_leases`)
    ).rows;
    expect(lease.node).toBe('node-a');
    const kicked = await api(cluster.node('node-c').url, `/v1/admin/connections/${lease.id}`, {
      method: 'DELETE',
    });
    expect(kicked).toEqual({
      status: 200,
      body: { connectionId: lease.id, sessionId: null, node: 'node-a', kicked: true },
    });
    expect((await held.closed).code).toBe(4003);
    await waitFor(
      async () =>
        (
          await db.query(
            `SELECT 1 FROM connection_audits
              WHERE id = $1 AND close_reason = 'kicked' AND closed_by = 'ops' AND node = 'node-a'`,
            [lease.id],
          )
        ).rowCount === 1,
      15_000,
      'the kick audited',
    );
    const unknown = await api(
      cluster.node('node-b').url,
      '/v1/admin/connections/00000000-0000-4000-8000-000000000000',
      { method: 'DELETE' },
    );
    expect(unknown.status).toBe(404);
    await closeAll();
  });

  it('delivers a msg pushed via node B to the client on node A, and says when nobody holds it', async () => {
    const client = await connect(cluster.node('node-a').url);
    const opened = await client.open({ video: { width: 64, height: 48, fps: 1 } });
    await waitFor(
      async () => (await leaseCount(`session_id = '${opened.sessionId}'`)) === 1,
      10_000,
      'the lease names the session',
    );
    const push = (id: string) =>
      api(cluster.node('node-b').url, `/v1/sessions/${opened.sessionId}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id, body: { text: 'hello from B' } }),
      });
    expect(await push('m-1')).toEqual({ status: 200, body: { id: 'm-1', delivered: true } });
    expect(await client.next('msg')).toEqual({
      type: 'msg',
      id: 'm-1',
      body: { text: 'hello from B' },
    });
    client.ws.close();
    await client.closed;
    await waitFor(async () => (await leaseCount()) === 0, 10_000, 'lease deleted');
    expect(await push('m-2')).toEqual({
      status: 200,
      body: { id: 'm-2', delivered: false, reason: 'not_connected' },
    });
    const { rows } = await db.query<{ client_id: string }>(
      `SELECT client_id FROM session_messages WHERE session_id = $1 AND direction = 'out'
        ORDER BY client_id`,
      [opened.sessionId],
    );
    expect(rows.map((r) => r.client_id)).toEqual(['m-1', 'm-2']);
    clients.splice(0);
  });

  it("stops counting a killed node's leases after NODE_DEAD_AFTER_MS, then deletes them", async () => {
    for (let i = 0; i < 3; i++) {
      await connect(cluster.node('node-b').url);
    }
    expect((await rejectedHandshake(cluster.node('node-a').url, { token })).status).toBe(429);
    const [lease] = (await db.query<{ id: string }>(`SELECT id FROM connection_leases`)).rows;
    await cluster.kill('node-b');
    for (const c of clients.splice(0)) {
      c.ws.terminate();
    }
    // Its node is gone: the kick cannot be carried out, and says so.
    const kick = await api(cluster.node('node-c').url, `/v1/admin/connections/${lease.id}`, {
      method: 'DELETE',
    });
    expect(kick.status).toBe(504);
    expect(kick.body).toMatchObject({ error: 'undelivered' });
    // Admitted again once node B is dead.
    let admitted: StreamClient | null = null;
    await waitFor(
      async () => {
        admitted = await connect(cluster.node('node-a').url).catch(() => null);
        return admitted !== null;
      },
      20_000,
      'admission after the dead node lapsed',
    );
    await waitFor(
      async () => (await leaseCount(`node = 'node-b'`)) === 0,
      20_000,
      "the dead node's leases deleted",
    );
    await closeAll();
    await cluster.startNode(1);
  });

  it('leaves no lease behind after clients die abruptly', async () => {
    for (let i = 0; i < 3; i++) {
      await connect(cluster.nodes[i].url, `abrupt-${i}`);
    }
    expect(await leaseCount()).toBe(3);
    for (const c of clients.splice(0)) {
      // No close frame: the socket is destroyed.
      c.ws.terminate();
    }
    await waitFor(async () => (await leaseCount()) === 0, 20_000, 'leases of dead sockets gone');
    const list = await api(cluster.url, '/v1/admin/connections');
    expect(list.body.items).toEqual([]);
    expect(await clusterCount()).toBe(0);
  });
});
