import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import { generate } from 'selfsigned';
import { RESPONSE_EXCERPT_BYTES, WebhookSender } from './webhook-sender';
import { type Lookup, validateWebhookUrl } from './webhook-url';

interface Seen {
  host: string | undefined;
  path: string;
  body: string;
}

/** A loopback HTTP server answering with `handler`; records what it got. */
async function serve(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ port: number; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      seen.push({ host: req.headers.host, path: req.url ?? '', body });
      handler(req, res);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A resolver answering fixed addresses, counting its calls. */
function fixedLookup(...addresses: string[]): Lookup & { calls: string[] } {
  const calls: string[] = [];
  const lookup = (hostname: string) => {
    calls.push(hostname);
    return Promise.resolve(
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
    );
  };
  return Object.assign(lookup, { calls });
}

const open = { allowHttp: true, allowPrivate: true };
const strict = { allowHttp: true, allowPrivate: false };
const post = (url: string) => ({
  url,
  headers: { 'Content-Type': 'application/json' },
  body: '{"a":1}',
});

describe('WebhookSender', () => {
  it('connects to the address it checked, once resolved, with the URL host in Host', async () => {
    const server = await serve((_req, res) => res.writeHead(204).end());
    try {
      const lookup = fixedLookup('127.0.0.1');
      const sender = new WebhookSender({ policy: open, timeoutMs: 5_000, lookup });
      const result = await sender.send(post(`http://hooks.example.test:${server.port}/in?x=1`));
      expect(result).toEqual({ kind: 'response', status: 204, excerpt: '' });
      // The name exists nowhere but in this resolver: the connection went to its one answer.
      expect(lookup.calls).toEqual(['hooks.example.test']);
      expect(server.seen).toEqual([
        { host: `hooks.example.test:${server.port}`, path: '/in?x=1', body: '{"a":1}' },
      ]);
    } finally {
      await server.close();
    }
  });

  it('refuses a name with any private address, and checks again at every send (DNS rebinding)', async () => {
    const server = await serve((_req, res) => res.writeHead(200).end());
    try {
      const url = `http://hooks.example.test:${server.port}/`;
      const mixed = new WebhookSender({
        policy: strict,
        timeoutMs: 5_000,
        lookup: fixedLookup('93.184.215.14', '127.0.0.1'),
      });
      expect(await mixed.send(post(url))).toEqual({
        kind: 'blocked',
        error: expect.stringMatching(/resolves to 127\.0\.0\.1, a loopback/),
      });
      // The same name: public when the URL was validated, loopback when the attempt is made.
      let answer = '93.184.215.14';
      const lookup: Lookup = (host) => fixedLookup(answer)(host);
      await expect(validateWebhookUrl(url, strict, lookup)).resolves.toBeUndefined();
      answer = '127.0.0.1';
      const sender = new WebhookSender({ policy: strict, timeoutMs: 5_000, lookup });
      expect((await sender.send(post(url))).kind).toBe('blocked');
      expect(server.seen).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it('refuses http: when only https is allowed, without connecting', async () => {
    const lookup = fixedLookup('93.184.215.14');
    const sender = new WebhookSender({
      policy: { allowHttp: false, allowPrivate: true },
      timeoutMs: 5_000,
      lookup,
    });
    expect(await sender.send(post('http://hooks.example.test/'))).toEqual({
      kind: 'blocked',
      error: expect.stringMatching(/https/),
    });
    expect(lookup.calls).toEqual([]);
  });

  it('follows no redirect', async () => {
    const server = await serve((req, res) => {
      if (req.url === '/from') {
        res.writeHead(307, { location: '/to' }).end();
      } else {
        res.writeHead(200).end();
      }
    });
    try {
      const sender = new WebhookSender({ policy: open, timeoutMs: 5_000 });
      const result = await sender.send(post(`http://127.0.0.1:${server.port}/from`));
      expect(result).toMatchObject({ kind: 'response', status: 307 });
      expect(server.seen.map((s) => s.path)).toEqual(['/from']);
    } finally {
      await server.close();
    }
  });

  it('keeps the first 1 KB of a large answer and stops reading it', async () => {
    let written = 0;
    const server = await serve((_req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      const chunk = Buffer.alloc(64 * 1024, 'y');
      // An endless answer: only the sender closing the connection ends it.
      const pump = (): void => {
        while (res.write(chunk)) {
          written += chunk.length;
          if (written > 64 * 1024 * 1024) {
            return;
          }
        }
        res.once('drain', pump);
      };
      pump();
    });
    try {
      const sender = new WebhookSender({ policy: open, timeoutMs: 10_000 });
      const result = await sender.send(post(`http://127.0.0.1:${server.port}/`));
      expect(result).toEqual({
        kind: 'response',
        status: 500,
        excerpt: 'y'.repeat(RESPONSE_EXCERPT_BYTES),
      });
      expect(written).toBeLessThan(64 * 1024 * 1024);
    } finally {
      await server.close();
    }
  });

  it('gives up on a receiver that does not answer within the timeout', async () => {
    const server = await serve(() => undefined);
    try {
      const sender = new WebhookSender({ policy: open, timeoutMs: 1_000 });
      expect(await sender.send(post(`http://127.0.0.1:${server.port}/`))).toEqual({
        kind: 'error',
        error: 'timed out after 1000 ms',
      });
    } finally {
      await server.close();
    }
  });

  it('keeps the status of an answer whose body is cut off', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setImmediate(() => res.socket?.destroy());
    });
    try {
      const sender = new WebhookSender({ policy: open, timeoutMs: 5_000 });
      expect(await sender.send(post(`http://127.0.0.1:${server.port}/`))).toMatchObject({
        kind: 'response',
        status: 200,
      });
    } finally {
      await server.close();
    }
  });

  it('reports a refused connection, a reset and an abort as errors', async () => {
    const server = await serve((req) => req.socket.destroy());
    const closed = await serve(() => undefined);
    const closedPort = closed.port;
    await closed.close();
    try {
      const sender = new WebhookSender({ policy: open, timeoutMs: 5_000 });
      expect(await sender.send(post(`http://127.0.0.1:${closedPort}/`))).toEqual({
        kind: 'error',
        error: expect.stringMatching(/^ECONNREFUSED/),
      });
      expect(await sender.send(post(`http://127.0.0.1:${server.port}/`))).toEqual({
        kind: 'error',
        error: expect.stringMatching(/^ECONNRESET|socket hang up/),
      });
      const controller = new AbortController();
      controller.abort('the node is shutting down');
      expect(
        await sender.send(post(`http://127.0.0.1:${server.port}/`), controller.signal),
      ).toEqual({ kind: 'error', error: 'aborted: the node is shutting down' });
    } finally {
      await server.close();
    }
  });

  it('verifies the TLS certificate against the URL host, not the pinned address', async () => {
    const pems = await generate([{ name: 'commonName', value: 'hooks.example.test' }], {
      keySize: 2048,
      extensions: [
        { name: 'subjectAltName', altNames: [{ type: 2, value: 'hooks.example.test' }] },
      ],
    });
    const seenNames: string[] = [];
    const context = createSecureContext({ cert: pems.cert, key: pems.private });
    const server: HttpsServer = createHttpsServer(
      {
        cert: pems.cert,
        key: pems.private,
        SNICallback: (name, callback) => {
          seenNames.push(name);
          callback(null, context);
        },
      },
      (_req, res) => res.writeHead(200).end(),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const sender = new WebhookSender({
        policy: open,
        timeoutMs: 5_000,
        lookup: fixedLookup('127.0.0.1'),
      });
      // Self-signed, so untrusted: refused, after the server was asked for hooks.example.test.
      const result = await sender.send(post(`https://hooks.example.test:${port}/`));
      expect(result).toEqual({
        kind: 'error',
        error: expect.stringMatching(/SELF_SIGNED|self[- ]signed|certificate/i),
      });
      expect(seenNames).toEqual(['hooks.example.test']);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
