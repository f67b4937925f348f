import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClientError, type FramegateClient } from '../client/src/client';
import { createNodeClient, type NodeClientOptions } from '../client/src/node';
import { Track } from '../src/protocol/media-header';
import { startTestApp, type TestApp } from './support/app';
import { jpegFrames, probe } from './support/media';
import { spooledFrames } from './support/spool-reader';
import { TcpProxy } from './support/tcp-proxy';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

const FRAMES = 100;
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('Node SDK', () => {
  let app: TestApp;
  let proxy: TcpProxy;
  let jpegs: Buffer[];
  const token = hsToken({ sub: 'alice', channel: 'branch-app' });
  const settings = {
    params: { transactionId: 'TX-sdk' },
    video: { width: 320, height: 240, fps: 10 },
  };
  const clients: FramegateClient[] = [];
  const dirs: string[] = [];

  beforeAll(async () => {
    // The spool is kept after the recording is ready, to count what was stored.
    [app, jpegs] = await Promise.all([
      startTestApp({ env: { KEEP_SPOOL: 'true' } }),
      jpegFrames(320, 240, FRAMES),
    ]);
  });
  beforeEach(async () => {
    proxy = await TcpProxy.start(app.url);
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.stop()));
    await proxy.close();
  });
  afterAll(async () => {
    for (const dir of dirs) {
      rmSync(dir, { recursive: true, force: true });
    }
    await app.close();
  });

  function client(options: Partial<NodeClientOptions> = {}): FramegateClient {
    const c = createNodeClient({
      url: proxy.url,
      token,
      reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
      ...options,
    });
    clients.push(c);
    return c;
  }

  /** Frames `from`..`to` at 10 fps of capture time: frame n has pts (n - 1) × 100. */
  async function sendFrames(c: FramegateClient, from: number, to: number): Promise<void> {
    for (const n of range(from, to)) {
      expect(await c.send(jpegs[n - 1], Track.Video, (n - 1) * 100)).toBe(n);
    }
  }

  /** Every frame is stored once, in order, and the recording decodes to all of them. */
  async function expectEveryFrameOnce(sessionId: string, closedFrames: number): Promise<void> {
    expect(closedFrames).toBe(FRAMES);
    const spooled = await spooledFrames(app.dataDir, sessionId);
    expect(spooled.map((f) => f.seq)).toEqual(range(1, FRAMES));
    expect(spooled.every((f, i) => f.payload.equals(jpegs[i]))).toBe(true);
    const row = await app.db.query<{ path: string; status: string }>(
      'SELECT path, status FROM recordings WHERE session_id = $1',
      [sessionId],
    );
    expect(row.rows[0].status).toBe('ready');
    expect((await probe(row.rows[0].path)).videoFrames).toBe(FRAMES);
  }

  /** The app's messages stored with a session, by id. */
  async function storedMessages(sessionId: string): Promise<Record<string, unknown>> {
    const rows = await app.db.query<{ client_id: string; body: unknown }>(
      `SELECT client_id, body FROM session_messages WHERE session_id = $1 AND direction = 'in'`,
      [sessionId],
    );
    return Object.fromEntries(rows.rows.map((r) => [r.client_id, r.body]));
  }

  it('streams 100 frames and closes with a complete recording', async () => {
    const c = client();
    const acks: string[] = [];
    c.on('messageAck', (id) => acks.push(id));
    const opened = await c.open(settings);
    expect(opened.resumed).toBe(false);
    await sendFrames(c, 1, 50);
    c.sendMessage('n1', { text: 'customer signed' });
    await sendFrames(c, 51, FRAMES);
    const closed = await c.close();
    expect(acks).toEqual(['n1']);
    expect(await storedMessages(opened.sessionId)).toEqual({ n1: { text: 'customer signed' } });
    expect(closed.recording).toMatchObject({ status: 'ready', durationMs: FRAMES * 100 });
    expect(c.stats()).toMatchObject({
      state: 'closed',
      transport: 'websocket',
      ackedSeq: FRAMES,
      outboxDepth: 0,
      unackedBytes: 0,
    });
    await expectEveryFrameOnce(opened.sessionId, closed.frames);
  });

  it('resumes after the connection is cut twice, and stores every frame exactly once', async () => {
    const c = client();
    const reconnects: string[] = [];
    c.on('reconnecting', (r) => reconnects.push(r.cause));
    const opened = await c.open(settings);
    const sending = sendFrames(c, 1, FRAMES);
    for (const ackedAtLeast of [30, 60]) {
      await waitFor(() => c.stats().ackedSeq >= ackedAtLeast, 30_000, `ack ${ackedAtLeast}`);
      expect(proxy.cut()).toBe(1);
    }
    await sending;
    const closed = await c.close();
    expect(reconnects).toHaveLength(2);
    expect(reconnects[0]).toMatch(/^close 1006/);
    await expectEveryFrameOnce(opened.sessionId, closed.frames);
  });

  it('resumes from a persistent outbox after the first client stopped with unacknowledged frames', async () => {
    const outboxDir = join(mkdtempSync(join(tmpdir(), 'framegate-sdk-outbox-')), 'outbox');
    dirs.push(join(outboxDir, '..'));
    const first = client({ outboxDir });
    const opened = await first.open(settings);
    await sendFrames(first, 1, 40);
    await waitFor(() => first.stats().ackedSeq === 40, 30_000, 'ack 40');
    // The link goes dead: frames 41..70 reach the outbox but neither the server nor an ack.
    proxy.freeze();
    await sendFrames(first, 41, 70);
    await first.flushed();
    expect(first.stats()).toMatchObject({ ackedSeq: 40, outboxDepth: 30 });
    await first.stop();
    proxy.thaw();

    const second = client({ outboxDir });
    const resumed = await second.open({ ...settings, params: { transactionId: 'ignored' } });
    expect(resumed).toMatchObject({ resumed: true, sessionId: opened.sessionId });
    expect(second.stats().nextSeq).toBe(71);
    await sendFrames(second, 71, FRAMES);
    const closed = await second.close();
    await expectEveryFrameOnce(opened.sessionId, closed.frames);
    // The outbox is gone once the session is closed: a third client would open a new session.
    const third = client({ outboxDir });
    expect((await third.open(settings)).resumed).toBe(false);
    // Closed, not left interrupted: nothing of the test outlives it on the server.
    expect((await third.close()).frames).toBe(0);
  });

  it('streams over HTTP when a proxy refuses the WebSocket upgrade', async () => {
    proxy.refuseUpgrades = true;
    const c = client();
    const transports: string[] = [];
    c.on('transport', (t) => transports.push(t));
    const opened = await c.open(settings);
    expect(transports).toEqual(['http']);
    await sendFrames(c, 1, 50);
    c.sendMessage('h1', { text: 'over http' });
    await sendFrames(c, 51, FRAMES);
    const closed = await c.close();
    expect(await storedMessages(opened.sessionId)).toEqual({ h1: { text: 'over http' } });
    expect(proxy.refused).toBe(1);
    expect(c.stats()).toMatchObject({ transport: 'http', ackedSeq: FRAMES });
    await expectEveryFrameOnce(opened.sessionId, closed.frames);
  });

  it('goes back to the WebSocket once the proxy lets it through, mid-session, every frame once', async () => {
    proxy.refuseUpgrades = true;
    const c = client({ retryWebSocketAfterMs: 300 });
    const transports: string[] = [];
    c.on('transport', (t) => transports.push(t));
    // `transport` turns to websocket as an attempt starts, before its upgrade is answered (an
    // attempt under way when the proxy relents may still be refused): the session is back on
    // the WebSocket once it was resumed there.
    let resumedOnWebSocket = false;
    c.on('opened', () => {
      resumedOnWebSocket ||= c.stats().transport === 'websocket';
    });
    const opened = await c.open(settings);
    await sendFrames(c, 1, 40);
    await waitFor(() => proxy.refused >= 2, 30_000, 'a second WebSocket try');
    proxy.refuseUpgrades = false;
    const sending = sendFrames(c, 41, FRAMES);
    await waitFor(() => resumedOnWebSocket, 30_000, 'back on the WebSocket');
    await sending;
    const closed = await c.close();
    expect(transports.slice(0, 2)).toEqual(['http', 'websocket']);
    expect(transports[transports.length - 1]).toBe('websocket');
    await expectEveryFrameOnce(opened.sessionId, closed.frames);
  });

  it('stops with invalid_token when the token is refused, without retrying', async () => {
    const c = client({ token: hsToken({ secret: 'not-the-server-secret-0123456789abcdef' }) });
    const errors: ClientError[] = [];
    c.on('error', (e) => errors.push(e));
    const rejection = c.open(settings);
    await expect(rejection).rejects.toBeInstanceOf(ClientError);
    await expect(rejection).rejects.toMatchObject({
      code: 'invalid_token',
      status: 401,
      message: expect.stringMatching(/refused the credentials/),
    });
    expect(errors).toHaveLength(1);
    expect(c.stats()).toMatchObject({ state: 'failed', reconnects: 0 });
  });
});
