import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FLAG_KEY, readMediaHeader, readMediaSeq, Track } from '../../src/protocol/media-header';
import { ClientError, FramegateClient } from './client';
import { DirectoryOutboxStore } from './directory-outbox.store';
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

const media = (codec: string) => ({
  video: { codec, maxWidth: 1920, maxHeight: 1080, maxKbps: 16_000, keyframeIntervalMs: 5000 },
  audio: null,
});

const openedBody = (lastSeq: number, codec = 'jpeg') => ({
  sessionId: '5c6d0000-0000-4000-8000-000000000000',
  resumeToken: 'r'.repeat(32),
  lastSeq,
  ack: { intervalMs: 200, maxFrames: 50 },
  limits: { maxFrameBytes: 2_097_152, maxFps: 1_000_000 },
  media: media(codec),
});

const opened = (lastSeq: number, codec = 'jpeg') =>
  JSON.stringify({ type: 'opened', ...openedBody(lastSeq, codec) });

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

  const h264 = {
    params: { transactionId: 'TX-1' },
    video: { width: 640, height: 480, fps: 10, codec: 'avc1.42001f', description: 'AUIAH/8=' },
  };

  async function openOn(c: FramegateClient, connections: FakeConnection[], codec = 'jpeg') {
    const open = c.open(codec === 'jpeg' ? settings : h264);
    await waitForConnections(connections, 1);
    connections[0].handlers.open();
    connections[0].handlers.message(opened(0, codec));
    return open;
  }

  it('flags key chunks in the header and resends them flagged after a reconnect', async () => {
    const { c, connections } = client();
    await openOn(c, connections, 'avc1.42001f');
    expect(c.stats().codec).toBe('avc1.42001f');
    expect(c.trySend(new Uint8Array([0, 0, 0, 1, 0x65]), Track.Video, 0, true)).toBe(1);
    expect(c.trySend(new Uint8Array([0, 0, 0, 1, 0x41]), Track.Video, 100)).toBe(2);
    const flags = (m: string | Uint8Array) => {
      const header = readMediaHeader(Buffer.from(m as Uint8Array));
      return typeof header === 'string' ? header : header.key;
    };
    expect(connections[0].sent.slice(1).map(flags)).toEqual([true, false]);
    connections[0].handlers.close(1006, '');
    await waitForConnections(connections, 2);
    connections[1].handlers.open();
    connections[1].handlers.message(opened(0, 'avc1.42001f'));
    await new Promise((r) => setImmediate(r));
    const resent = connections[1].sent.filter((m): m is Uint8Array => typeof m !== 'string');
    expect(resent.map(flags)).toEqual([true, false]);
    expect(Buffer.from(resent[0]).equals(Buffer.from(connections[0].sent[1] as Uint8Array))).toBe(
      true,
    );
  });

  it('refuses a key flag on the audio track before anything is sent', async () => {
    const { c, connections } = client();
    await openOn(c, connections, 'avc1.42001f');
    let thrown: unknown;
    try {
      c.trySend(new Uint8Array(8), Track.Audio, 0, true);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ClientError);
    expect(thrown).toMatchObject({ code: 'invalid_frame' });
    expect(seqsOf(connections[0])).toEqual([]);
  });

  it('rejects open() with codec_not_allowed and opens again with other settings', async () => {
    const { c, connections } = client();
    const refused = c.open(h264);
    await waitForConnections(connections, 1);
    connections[0].handlers.open();
    connections[0].handlers.message(
      JSON.stringify({
        type: 'error',
        code: 'codec_not_allowed',
        message: 'video codec avc1.42001f is not accepted on this channel; accepted: jpeg',
      }),
    );
    await expect(refused).rejects.toMatchObject({ code: 'codec_not_allowed' });
    expect(c.stats().state).toBe('idle');
    expect(connections[0].terminated).toBe(true);

    const again = c.open(settings);
    await waitForConnections(connections, 2);
    connections[1].handlers.open();
    expect(JSON.parse(connections[1].sent[0] as string)).toEqual({ type: 'open', ...settings });
    connections[1].handlers.message(opened(0));
    await expect(again).resolves.toMatchObject({ resumed: false });
    expect(c.stats().codec).toBe('jpeg');
    expect(c.sessionSettings()).toEqual(settings);
  });

  it('settles a bad_frame without failing: counted, reported, and not sent again', async () => {
    const { c, connections } = client();
    const refusals: unknown[] = [];
    c.on('badFrame', (r) => refusals.push(r));
    await openOn(c, connections, 'vp8');
    for (let i = 0; i < 3; i++) {
      c.trySend(new Uint8Array([i]), Track.Video, i * 100, i === 0);
    }
    const badFrame = { type: 'error', code: 'bad_frame', message: 'not a VP8 frame', seq: 2 };
    connections[0].handlers.message(JSON.stringify(badFrame));
    // The same chunk reported twice (resent after a lost ack) is one refused frame.
    connections[0].handlers.message(JSON.stringify(badFrame));
    connections[0].handlers.message('{"type":"ack","seq":3}');
    expect(refusals).toEqual([
      { seq: 2, message: 'not a VP8 frame' },
      { seq: 2, message: 'not a VP8 frame' },
    ]);
    expect(c.stats()).toMatchObject({ state: 'open', ackedSeq: 3, refusedFrames: 1 });
    expect(seqsOf(connections[0])).toEqual([1, 2, 3]);
  });

  it('reports key-frame requests, and stops on one with an unknown reason', async () => {
    const { c, connections } = client();
    const reasons: string[] = [];
    c.on('keyframe', (reason) => reasons.push(reason));
    const open = openOn(c, connections, 'vp8');
    await open;
    connections[0].handlers.message('{"type":"keyframe","reason":"resume"}');
    connections[0].handlers.message('{"type":"keyframe","reason":"interval"}');
    expect(reasons).toEqual(['resume', 'interval']);
    const closing = c.close();
    connections[0].handlers.message('{"type":"keyframe","reason":"whim"}');
    await expect(closing).rejects.toMatchObject({ code: 'protocol_error' });
  });

  describe('with a persistent outbox', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'framegate-client-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('resumes with the settings the session began with, codec and description included', async () => {
      const first = client({ outbox: new DirectoryOutboxStore(dir) });
      await openOn(first.c, first.connections, 'avc1.42001f');
      first.c.trySend(new Uint8Array([0, 0, 0, 1, 0x65]), Track.Video, 0, true);
      await first.c.flushed();
      await first.c.stop();

      const second = client({ outbox: new DirectoryOutboxStore(dir) });
      // The app now asks for JPEG: the outbox's session is resumed as it began.
      const resumed = second.c.open(settings);
      await waitForConnections(second.connections, 1);
      second.connections[0].handlers.open();
      expect(JSON.parse(second.connections[0].sent[0] as string)).toMatchObject({
        type: 'resume',
      });
      second.connections[0].handlers.message(opened(0, 'avc1.42001f'));
      await expect(resumed).resolves.toMatchObject({ resumed: true });
      expect(second.c.sessionSettings()).toEqual(h264);
      const [chunk] = second.connections[0].sent.filter(
        (m): m is Uint8Array => typeof m !== 'string',
      );
      expect((chunk[2] << 8) | chunk[3]).toBe(FLAG_KEY);
    });
  });
});

/** Splits a frames body (`u32 length` + message, repeated). */
function framesOf(body: Buffer): Buffer[] {
  const messages: Buffer[] = [];
  for (let offset = 0; offset < body.length;) {
    const length = body.readUInt32BE(offset);
    messages.push(body.subarray(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  return messages;
}

describe('FramegateClient over the HTTP fallback (scripted server)', () => {
  let server: Server;
  let url: string;
  let handle: (req: IncomingMessage, body: Buffer, res: ServerResponse) => void;
  const clients: FramegateClient[] = [];

  beforeEach(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => handle(req, Buffer.concat(chunks), res));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.stop()));
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** A client whose WebSocket upgrades are refused (403), so that it streams over HTTP. */
  function httpClient(): FramegateClient {
    const factory: SocketFactory = {
      canSetHeaders: true,
      connect(_url, _protocol, _headers, handlers) {
        setImmediate(() => handlers.refused(403, null, null));
        return { send: () => undefined, close: () => undefined, terminate: () => undefined };
      },
    };
    const c = new FramegateClient({
      url,
      token: 't1',
      socket: factory,
      reconnect: { initialDelayMs: 1, maxDelayMs: 5, maxAttempts: 3 },
      pingIntervalMs: 60_000,
    });
    clients.push(c);
    return c;
  }

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

  it('reports the refused chunks and the key-frame request of a frames answer', async () => {
    const c = httpClient();
    const refusals: unknown[] = [];
    const reasons: string[] = [];
    c.on('badFrame', (r) => refusals.push(r));
    c.on('keyframe', (reason) => reasons.push(reason));
    let stored = 0;
    handle = (req, body, res) => {
      if (req.url === '/v1/sessions') {
        return json(res, 201, openedBody(0, 'vp8'));
      }
      const seqs = framesOf(body).map(readMediaSeq);
      stored = Math.max(stored, ...seqs);
      json(res, 200, {
        ack: stored,
        media: media('vp8'),
        ...(seqs.includes(2)
          ? {
              refused: [{ seq: 2, code: 'bad_frame', message: 'not a VP8 frame' }],
              keyframe: 'refused',
            }
          : {}),
      });
    };
    await c.open({ video: { width: 640, height: 480, codec: 'vp8' } });
    c.trySend(new Uint8Array([1]), Track.Video, 0, true);
    c.trySend(new Uint8Array([2]), Track.Video, 100);
    while (c.stats().ackedSeq < 2) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(refusals).toEqual([{ seq: 2, message: 'not a VP8 frame' }]);
    expect(reasons).toEqual(['refused']);
    expect(c.stats()).toMatchObject({ transport: 'http', refusedFrames: 1, codec: 'vp8' });
  });

  it('rejects open() with codec_not_allowed on a 422, and is idle again', async () => {
    const c = httpClient();
    handle = (_req, _body, res) =>
      json(res, 422, { error: 'codec_not_allowed', message: 'accepted: jpeg' });
    await expect(
      c.open({ video: { width: 640, height: 480, codec: 'vp8' } }),
    ).rejects.toMatchObject({ code: 'codec_not_allowed', status: 422 });
    expect(c.stats().state).toBe('idle');
  });

  it('stops with protocol_error on a frames answer with a malformed refusal', async () => {
    const c = httpClient();
    handle = (req, _body, res) =>
      req.url === '/v1/sessions'
        ? json(res, 201, openedBody(0, 'vp8'))
        : json(res, 200, { ack: 1, media: media('vp8'), refused: [{ seq: 'one' }] });
    await c.open({ video: { width: 640, height: 480, codec: 'vp8' } });
    c.trySend(new Uint8Array([1]), Track.Video, 0, true);
    const closing = c.close();
    await expect(closing).rejects.toMatchObject({ code: 'protocol_error' });
  });
});
