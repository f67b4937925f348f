import type { Browser, BrowserContext, Page } from 'playwright-core';
import { Track } from '../src/protocol/media-header';
import { startTestApp, type TestApp } from './support/app';
import {
  expectStoredAsTaken,
  launchChromium,
  pageErrors,
  pauseDemo,
  startDemo,
  stopDemo,
  waitForDemo,
  watchTaken,
  type Taken,
} from './support/browser';
import { ensureClientBuilt } from './support/client-build';
import { probe } from './support/media';
import { TcpProxy } from './support/tcp-proxy';
import { hsToken } from './support/tokens';

/**
 * The browser SDK through the demo page on a bad network: a test proxy in front of the service
 * cuts connections, freezes them or refuses WebSocket upgrades. The page is loaded through the
 * proxy too (http://localhost:PROXY/demo), so the SDK's origin is the proxy's.
 */
describe('the browser SDK on a bad network (Chromium, /demo)', () => {
  let app: TestApp;
  let browser: Browser;
  let proxy: TcpProxy;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  let taken: Taken[];
  const token = hsToken({
    sub: 'alice',
    channel: 'branch-app',
    scope: 'stream:publish recording:read',
  });

  beforeAll(async () => {
    // Chromium first: a machine without it fails here, with nothing started to clean up.
    browser = await launchChromium();
    await ensureClientBuilt();
    app = await startTestApp({ env: { KEEP_SPOOL: 'true' } });
  });
  beforeEach(async () => {
    proxy = await TcpProxy.start(app.url);
    context = await browser.newContext();
    page = await context.newPage();
    errors = pageErrors(page);
    taken = await watchTaken(page);
  });
  afterEach(async () => {
    await context?.close();
    await proxy?.close();
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  const video = () => taken.filter((t) => t.track === (Track.Video as number)).length;

  async function expectRecordingOfEverything(sessionId: string, frames: number): Promise<void> {
    expect(frames).toBe(taken.length);
    await expectStoredAsTaken(app.dataDir, sessionId, taken);
    const row = await app.db.query<{ path: string; status: string }>(
      'SELECT path, status FROM recordings WHERE session_id = $1',
      [sessionId],
    );
    expect(row.rows[0].status).toBe('ready');
    expect((await probe(row.rows[0].path)).videoFrames).toBe(video());
  }

  it('resumes after the connection is cut mid-session; every frame is stored exactly once', async () => {
    await startDemo(page, proxy.url, token);
    const before = await waitForDemo(page, (s) => s.ackedSeq >= 20, 'ack 20');
    expect(proxy.cut()).toBeGreaterThanOrEqual(1);
    await waitForDemo(
      page,
      (s) => s.reconnects >= 1 && s.state === 'open' && s.ackedSeq >= before.nextSeq + 20,
      'a resumed session acknowledging 20 more frames',
    );
    const closed = await stopDemo(page);
    await expectRecordingOfEverything(closed.sessionId, closed.frames);
    expect(errors).toEqual([]);
  });

  it('resumes from IndexedDB after a page reload, delivering what the old page had not, every frame once', async () => {
    await startDemo(page, proxy.url, token);
    await waitForDemo(page, (s) => s.ackedSeq >= 20, 'ack 20');
    // The link dies under the page: frames go on into the IndexedDB outbox, unacknowledged.
    proxy.freeze({ webSocketsOnly: true });
    await waitForDemo(page, (s) => s.outboxDepth >= 20, '20 frames unacknowledged');
    const beforeReload = await pauseDemo(page);
    expect(beforeReload.ackedSeq).toBeLessThan(beforeReload.nextSeq - 1);
    const takenBefore = taken.length;
    expect(takenBefore).toBe(beforeReload.nextSeq - 1);

    await page.reload();
    // The new page finds the running session in this tab and resumes it from IndexedDB.
    await waitForDemo(
      page,
      (s) =>
        s.resumed === true &&
        s.state === 'open' &&
        s.video >= 20 &&
        s.ackedSeq >= beforeReload.nextSeq - 1,
      'the reloaded page resumed, delivered the old outbox and captured 20 frames',
    );
    // The new page continues the seqs where the old one stopped.
    expect(taken[takenBefore].seq).toBe(beforeReload.nextSeq);
    const closed = await stopDemo(page);
    await expectRecordingOfEverything(closed.sessionId, closed.frames);
    expect(closed.frames).toBeGreaterThan(takenBefore);
  });

  it('lowers the JPEG quality while acks stop coming, and restores it once they flow again', async () => {
    await startDemo(page, proxy.url, token);
    const before = await waitForDemo(page, (s) => s.ackedSeq >= 20, 'ack 20');
    expect(before.quality).toBe(0.7);
    // A dead link: more than 2 s of messages pile up unacknowledged, one step down a second,
    // quality first.
    proxy.freeze({ webSocketsOnly: true });
    await waitForDemo(page, (s) => s.quality <= 0.5, 'quality lowered twice');
    // The dead connection is cut: the SDK resumes, the backlog drains, and after calm spells the
    // quality climbs back one step at a time. (Not the fps: a busy server's `flow` may hold it.)
    proxy.thaw();
    await waitForDemo(
      page,
      (s) => s.reconnects >= 1 && s.quality === 0.7,
      'the quality restored',
      60_000,
    );
    const closed = await stopDemo(page);
    await expectRecordingOfEverything(closed.sessionId, closed.frames);
  });

  it('streams over HTTP when a proxy answers WebSocket upgrades with 403; the recording is complete', async () => {
    proxy.refuseUpgrades = true;
    await startDemo(page, proxy.url, token);
    const streaming = await waitForDemo(
      page,
      (s) => s.ackedSeq >= 50 && s.video >= 30,
      '50 messages acknowledged over HTTP',
    );
    expect(streaming.transport).toBe('http');
    const closed = await stopDemo(page);
    expect(proxy.refused).toBeGreaterThanOrEqual(1);
    await expectRecordingOfEverything(closed.sessionId, closed.frames);
    // Chromium reports the refused upgrade on the console; nothing else went wrong.
    expect(errors.filter((e) => !/WebSocket connection to .* failed/.test(e))).toEqual([]);
  });
});
