import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of the app, for the SDK's tests: it can cut every connection through it
 * (both sides see a reset, as on a network loss), freeze traffic (bytes are held, as on a dead
 * link), and answer WebSocket upgrades with 403 (a proxy that blocks WebSockets).
 */
export class TcpProxy {
  /** Answer each HTTP upgrade with 403 instead of forwarding it. */
  refuseUpgrades = false;
  /** Upgrades refused so far. */
  refused = 0;
  private frozen = false;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket; webSocket: boolean }>();
  /** Every accepted socket, also those refused or still silent, so that close() ends them all. */
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly port: number,
  ) {}

  static async start(targetUrl: string): Promise<TcpProxy> {
    const target = new URL(targetUrl);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (!address || typeof address === 'string') {
      throw new Error('proxy has no port');
    }
    const proxy = new TcpProxy(server, address.port);
    server.on('connection', (client: Socket) => proxy.accept(client, target));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Resets every connection through the proxy; returns how many there were. */
  cut(): number {
    const n = this.pairs.size;
    for (const { client, upstream } of this.pairs) {
      reset(client);
      reset(upstream);
    }
    this.pairs.clear();
    return n;
  }

  /**
   * Holds every byte in both directions on the connections open now and on later ones. With
   * `webSocketsOnly`, only the WebSocket connections open now: a browser page can still reload
   * (over new or kept-alive HTTP connections) while its old WebSocket stays dead.
   */
  freeze(options: { webSocketsOnly?: boolean } = {}): void {
    this.frozen = !options.webSocketsOnly;
    for (const { client, upstream, webSocket } of this.pairs) {
      if (webSocket || !options.webSocketsOnly) {
        client.pause();
        upstream.pause();
      }
    }
  }

  /** Cuts the frozen connections and lets new ones through again. */
  thaw(): void {
    this.cut();
    this.frozen = false;
  }

  async close(): Promise<void> {
    this.cut();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) {
      socket.destroy();
    }
    await closed;
  }

  private accept(client: Socket, target: URL): void {
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.once('data', (first: Buffer) => {
      const webSocket = /^upgrade:\s*websocket/im.test(first.toString('latin1'));
      if (this.refuseUpgrades && webSocket) {
        this.refused++;
        client.end(
          'HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n' +
            'Connection: close\r\n\r\nWebSockets blocked\r\n',
        );
        return;
      }
      const upstream = connect(Number(target.port), target.hostname);
      const pair = { client, upstream, webSocket };
      this.pairs.add(pair);
      upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
      if (this.frozen) {
        client.pause();
        upstream.pause();
      }
      const drop = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop);
      upstream.on('error', drop);
      client.on('close', drop);
      upstream.on('close', drop);
    });
    client.on('error', () => client.destroy());
  }
}

/**
 * Ends a socket with a TCP reset, as a network loss does. Only while it is open both ways: on a
 * half-closed socket Node's reset never completes and its handle stays open.
 */
function reset(socket: Socket): void {
  if (socket.readyState === 'open') {
    socket.resetAndDestroy();
  } else {
    socket.destroy();
  }
}
