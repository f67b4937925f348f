import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../src/database/embedded-postgres';
import { testDir } from './dirs';
import { PgProcess } from './pg-process';
import { ServiceProcess } from './service-process';
import { TEST_SECRET } from './tokens';

export const NGINX = '/usr/sbin/nginx';

/** How long a node may take to drain and exit on SIGTERM before `stop()` kills it. */
const STOP_GRACE_MS = 60_000;

export interface ClusterNode {
  readonly id: string;
  readonly port: number;
  readonly dataDir: string;
  /** The node's own URL (http://127.0.0.1:port). */
  readonly url: string;
  service: ServiceProcess;
}

export interface ClusterOptions {
  nodes: number;
  /** Env for every node; `perNode` adds or overrides per node index. */
  env?: Record<string, string>;
  perNode?: (index: number) => Record<string, string>;
}

/**
 * N framegate nodes on loopback, each with its own port and DATA_DIR, sharing one Postgres and
 * one spool directory, with Debian's nginx in front in round robin (no stickiness). Started by
 * the test, stopped by `stop()`.
 */
export class Cluster {
  readonly nodes: ClusterNode[] = [];
  readonly pg: PgProcess;
  readonly dir: string;
  readonly spoolDir: string;
  readonly recordingsDir: string;
  private nginx: ChildProcess | undefined;
  nginxPort = 0;

  private constructor(private readonly options: ClusterOptions) {
    this.dir = testDir('cluster');
    this.spoolDir = join(this.dir, 'shared', 'spool');
    this.recordingsDir = join(this.dir, 'shared', 'recordings');
    mkdirSync(this.spoolDir, { recursive: true });
    mkdirSync(this.recordingsDir, { recursive: true });
    this.pg = new PgProcess(join(this.dir, 'postgres'), 0);
  }

  static async start(options: ClusterOptions): Promise<Cluster> {
    const cluster = new Cluster(options);
    try {
      await cluster.pg.start();
      for (let i = 0; i < options.nodes; i++) {
        const port = await freePort();
        const id = `node-${String.fromCharCode(97 + i)}`;
        const node: ClusterNode = {
          id,
          port,
          dataDir: join(cluster.dir, id),
          url: `http://127.0.0.1:${port}`,
          service: undefined as unknown as ServiceProcess,
        };
        mkdirSync(node.dataDir, { recursive: true });
        cluster.nodes.push(node);
      }
      // One at a time: the first runs the migrations, the others find them applied.
      for (let i = 0; i < cluster.nodes.length; i++) {
        await cluster.startNode(i);
      }
      await cluster.startNginx();
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  /** The load balancer's URL. */
  get url(): string {
    return `http://127.0.0.1:${this.nginxPort}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.nginxPort}/v1/stream`;
  }

  node(id: string): ClusterNode {
    const node = this.nodes.find((n) => n.id === id);
    if (!node) {
      throw new Error(`no node ${id}`);
    }
    return node;
  }

  envOf(index: number): Record<string, string> {
    const node = this.nodes[index];
    return {
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      NODE_ID: node.id,
      HOST: '127.0.0.1',
      PORT: String(node.port),
      DATA_DIR: node.dataDir,
      SPOOL_DIR: this.spoolDir,
      RECORDINGS_DIR: this.recordingsDir,
      DATABASE_URL: this.pg.url,
      AUTH_JWT_SECRET: TEST_SECRET,
      // nginx is the one proxy in front: its X-Forwarded-For names the client.
      TRUST_PROXY: '127.0.0.1',
      NODE_HEARTBEAT_MS: '250',
      NODE_DEAD_AFTER_MS: '1500',
      ...this.options.env,
      ...this.options.perNode?.(index),
    };
  }

  /** (Re)starts node `index` on its port and DATA_DIR. */
  async startNode(index: number, extraEnv: Record<string, string> = {}): Promise<ClusterNode> {
    const node = this.nodes[index];
    node.service = new ServiceProcess({ ...this.envOf(index), ...extraEnv }, node.dataDir, {
      detached: true,
    });
    await node.service.listening();
    return node;
  }

  /** kill -9 of a node's whole process group (the service and its ffmpeg children). */
  async kill(id: string): Promise<void> {
    const node = this.node(id);
    const pid = node.service.child.pid;
    if (pid !== undefined && node.service.child.exitCode === null) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        node.service.child.kill('SIGKILL');
      }
    }
    await node.service.exit();
  }

  private async startNginx(): Promise<void> {
    this.nginxPort = await freePort();
    const dir = join(this.dir, 'nginx');
    mkdirSync(join(dir, 'logs'), { recursive: true });
    const servers = this.nodes
      .map((n) => `    server 127.0.0.1:${n.port} max_fails=1 fail_timeout=1s;`)
      .join('\n');
    const conf = `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  upstream framegate {
${servers}
  }
  server {
    listen 127.0.0.1:${this.nginxPort};
    client_max_body_size 64m;
    location / {
      proxy_pass http://framegate;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_next_upstream error timeout;
      proxy_connect_timeout 2s;
    }
  }
}
`;
    const confPath = join(dir, 'nginx.conf');
    writeFileSync(confPath, conf);
    const child = spawn(NGINX, ['-p', dir, '-c', confPath, '-e', join(dir, 'logs/error.log')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.nginx = child;
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    // Ready once it accepts connections.
    for (let i = 0; i < 100; i++) {
      if (child.exitCode !== null) {
        throw new Error(`nginx exited with ${child.exitCode}: ${err}`);
      }
      const up = await fetch(`${this.url}/health/live`)
        .then((r) => r.ok)
        .catch(() => false);
      if (up) {
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `nginx did not start: ${err} ${readFileSync(join(dir, 'logs/error.log'), 'utf8')}`,
    );
  }

  async stop(): Promise<void> {
    const nginx = this.nginx;
    this.nginx = undefined;
    if (nginx && nginx.exitCode === null) {
      await new Promise<void>((resolve) => {
        nginx.once('exit', () => resolve());
        nginx.kill('SIGTERM');
      });
    }
    await Promise.all(
      this.nodes
        .filter((n) => n.service && n.service.child.exitCode === null)
        .map(async (n) => {
          const timer = setTimeout(() => {
            // A node that cannot drain must not hang the run: it is named, and killed.
            process.stderr.write(`cluster: ${n.id} did not stop within ${STOP_GRACE_MS} ms\n`);
            void this.kill(n.id);
          }, STOP_GRACE_MS);
          await n.service.stop('SIGTERM');
          clearTimeout(timer);
        }),
    );
    await this.pg.stop();
  }
}
