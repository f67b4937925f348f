import { Cluster } from './support/cluster';
import { stopServices } from './support/service-process';
import { hsToken } from './support/tokens';

jest.setTimeout(240_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface NodeList {
  node: string;
  items: Array<{ id: string; alive: boolean; stoppedAt: string | null }>;
}

/** Three nodes on one Postgres behind nginx in round robin: membership and its failures. */
describe('cluster membership behind nginx', () => {
  let cluster: Cluster;
  const admin = hsToken({ sub: 'ops', scope: 'admin' });

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3 });
  });
  afterAll(async () => {
    await cluster?.stop();
    await stopServices();
  });

  async function nodesVia(url: string): Promise<NodeList> {
    const res = await fetch(`${url}/v1/admin/nodes`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(res.status).toBe(200);
    return (await res.json()) as NodeList;
  }

  async function aliveIds(): Promise<string[]> {
    const list = await nodesVia(cluster.url);
    return list.items.filter((n) => n.alive).map((n) => n.id);
  }

  it('registers every node, and nginx spreads requests over all of them without stickiness', async () => {
    const answered = new Set<string>();
    for (let i = 0; i < 9; i++) {
      const list = await nodesVia(cluster.url);
      answered.add(list.node);
      expect(list.items.map((n) => n.id)).toEqual(['node-a', 'node-b', 'node-c']);
      expect(list.items.every((n) => n.alive)).toBe(true);
    }
    expect([...answered].sort()).toEqual(['node-a', 'node-b', 'node-c']);
  });

  it('reports each node ready with a fresh heartbeat', async () => {
    for (const node of cluster.nodes) {
      const res = await fetch(`${node.url}/health/ready`, {
        headers: { authorization: `Bearer ${admin}` },
      });
      const body = (await res.json()) as {
        info: { membership: { status: string; node: string; busListening: boolean } };
      };
      expect(res.status).toBe(200);
      expect(body.info.membership).toMatchObject({
        status: 'up',
        node: node.id,
        busListening: true,
      });
    }
  });

  it('counts a node killed with -9 dead after NODE_DEAD_AFTER_MS, and alive again once restarted', async () => {
    await cluster.kill('node-b');
    let alive = await aliveIds();
    for (let i = 0; i < 60 && alive.includes('node-b'); i++) {
      await sleep(250);
      alive = await aliveIds();
    }
    expect(alive).toEqual(['node-a', 'node-c']);
    // The balancer routes around it: every request still gets an answer from a live node.
    for (let i = 0; i < 6; i++) {
      expect(['node-a', 'node-c']).toContain((await nodesVia(cluster.url)).node);
    }

    await cluster.startNode(1);
    expect(
      (await nodesVia(cluster.node('node-b').url)).items.find((n) => n.id === 'node-b'),
    ).toMatchObject({
      alive: true,
      stoppedAt: null,
    });
  });

  it('counts a node stopped with SIGTERM dead at once', async () => {
    await cluster.node('node-c').service.stop('SIGTERM');
    const list = await nodesVia(cluster.node('node-a').url);
    const c = list.items.find((n) => n.id === 'node-c');
    expect(c?.alive).toBe(false);
    expect(c?.stoppedAt).not.toBeNull();
    await cluster.startNode(2);
    expect(await aliveIds()).toEqual(['node-a', 'node-b', 'node-c']);
  });
});
