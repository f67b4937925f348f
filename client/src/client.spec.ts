import { readMediaSeq } from '../../src/protocol/media-header';
import { ClientError, FramegateClient } from './client';
import type { SocketFactory, SocketHandlers } from './socket';

/** A scripted server: each connection the client makes, with what it sent. */
interface FakeConnection {
  url: string;
  headers: Record<string, string>;
  handlers: SocketHandlers;
  sent: (string | Uint8Array)[];
  terminated: boolean;
}

function fakeSockets(): { factory: SocketFactory; connections: FakeConnection[] } {
  const connections: FakeConnection[] = [];
  const factory: SocketFactory = {
    canSetHeaders: true,
    connect(url, _protocol, headers, handlers) {
      const c: FakeConnection = { url, headers, handlers, sent: [], terminated: false };
      connections.push(c);
      return {
        send: (data) => c.sent.push(data),
        close: () => undefined,
        terminate: () => {
          c.terminated = true;
        },
      };
    },
  };
  return { factory, connections };
}

const opened = (lastSeq: number) =>
  JSON.stringify({
    type: 'opened',
    sessionId: '5c6d0000-0000-4000-8000-000000000000',
    resumeToken: 'r'.repeat(32),
    lastSeq,
    ack: { intervalMs: 200, maxFrames: 50 },
    limits: { maxFrameBytes: 2_097_152, maxFps: 1_000_000 },
  });

const seqsOf = (c: FakeConnection) =>
  c.sent.filter((m): m is Uint8Array => typeof m !== 'string').map(readMediaSeq);

async function waitForConnections(list: FakeConnection[], n: number): Promise<void> {
  while (list.length < n) {
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('FramegateClient (scripted server)', () => {
  const settings = { video: { width: 640, height: 480 } };
  const fast = { initialDelayMs: 1, maxDelayMs: 5, maxAttempts: 3 };
  const clients: FramegateClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.stop()));
  });

  function client(options: Partial<ConstructorParameters<typeof FramegateClient>[0]> = {}) {
    const { factory, connections } = fakeSockets();
    const c = new FramegateClient({
      url: 'http://fg.test',
      token: 't1',
      socket: factory,
      reconnect: fast,
      ...options,
    });
    clients.push(c);
    return { c, connections };
  }

  it('resends after a 1006 exactly what the resumed session lacks', async () => {
    const { c, connections } = client();
    const open = c.open(settings);
    await waitForConnections(connections, 1);
    connections[0].handlers.open();
    expect(JSON.parse(connections[0].sent[0] as string)).toMatchObject({ type: 'open' });
    connections[0].handlers.message(opened(0));
    await open;
    for (let i = 0; i < 5; i++) {
      expect(c.trySend(new Uint8Array([0xff, 0xd8, i]), 1, i * 100)).toBe(i + 1);
    }
    expect(seqsOf(connections[0])).toEqual([1, 2, 3, 4, 5]);
    connections[0].handlers.message('{"type":"ack","seq":2}');
    connections[0].handlers.close(1006, '');
    await waitForConnections(connections, 2);
    connections[1].handlers.open();
    expect(JSON.parse(connections[1].sent[0] as string)).toMatchObject({ type: 'resume' });
    // The server had stored 3 (its ack for 3 was lost with the connection).
    connections[1].handlers.message(opened(3));
    await new Promise((r) => setImmediate(r));
    expect(seqsOf(connections[1])).toEqual([4, 5]);
    expect(c.stats()).toMatchObject({ ackedSeq: 3, outboxDepth: 2, reconnects: 1 });
  });

  it('asks getToken for a fresh token on 4001 and resumes with it', async () => {
    const tokens = ['t2', 't3'];
    const { c, connections } = client({ token: undefined, getToken: () => tokens.shift()! });
    const open = c.open(settings);
    await waitForConnections(connections, 1);
    expect(connections[0].headers.authorization).toBe('Bearer t2');
    connections[0].handlers.open();
    connections[0].handlers.message(opened(0));
    await open;
    connections[0].handlers.close(4001, 'token expired');
    await waitForConnections(connections, 2);
    expect(connections[1].headers.authorization).toBe('Bearer t3');
  });

  it.each([
    [4003, 'kicked'],
    [4004, 'unknown_session'],
    [4029, 'quota_exceeded'],
  ])('stops on %i with the final error %s', async (code, name) => {
    const { c, connections } = client();
    const open = c.open(settings);
    await waitForConnections(connections, 1);
    connections[0].handlers.open();
    connections[0].handlers.message(opened(0));
    await open;
    const closing = c.close();
    connections[0].handlers.close(code, 'bye');
    await expect(closing).rejects.toMatchObject({ code: name, closeCode: code });
    expect(connections).toHaveLength(1);
  });

  it('gives up after maxAttempts reconnects in a row', async () => {
    const { c, connections } = client();
    const open = c.open(settings);
    for (let n = 1; n <= 4; n++) {
      await waitForConnections(connections, n);
      connections[n - 1].handlers.close(1011, 'internal');
    }
    await expect(open).rejects.toMatchObject({ code: 'reconnect_failed' });
  });

  it('stops with protocol_error on a malformed server message instead of throwing', async () => {
    const { c, connections } = client();
    const open = c.open(settings);
    await waitForConnections(connections, 1);
    connections[0].handlers.open();
    connections[0].handlers.message('{"type":"opened","sessionId":7}');
    await expect(open).rejects.toBeInstanceOf(ClientError);
    await expect(open).rejects.toMatchObject({ code: 'protocol_error' });
    expect(connections[0].terminated).toBe(true);
  });

  it('refuses frames past maxUnackedBytes with one backpressure event, and drains on ack', async () => {
    const { c, connections } = client({ maxUnackedBytes: 1000 });
    const events: string[] = [];
    c.on('backpressure', () => events.push('backpressure'));
    c.on('drain', () => events.push('drain'));
    const open = c.open(settings);
    await waitForConnections(connections, 1);
    connections[0].handlers.open();
    connections[0].handlers.message(opened(0));
    await open;
    const frame = new Uint8Array(288); // 300 bytes with the header
    expect([1, 2, 3, 4].map(() => c.trySend(frame))).toEqual([1, 2, 3, 'full']);
    expect(c.trySend(frame)).toBe('full');
    connections[0].handlers.message('{"type":"ack","seq":1}');
    expect(c.trySend(frame)).toBe(4);
    expect(events).toEqual(['backpressure', 'drain']);
  });
});
