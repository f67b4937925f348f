import { randomUUID } from 'node:crypto';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startTestApp, type TestApp } from './support/app';
import { launchChromium, localhost, pageErrors } from './support/browser';
import { ensureClientBuilt } from './support/client-build';
import { jpegFrames } from './support/media';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';

/** The browser globals the page functions below use (the tests' tsconfig has no DOM library). */
declare const document: {
  getElementById(id: string): {
    currentTime: number;
    readyState: number;
    textContent: string;
    play(): Promise<void>;
    textTracks: ArrayLike<{
      kind: string;
      mode: string;
      cues: ArrayLike<{ startTime: number; endTime: number; text: string }> | null;
      activeCues: ArrayLike<{ text: string }> | null;
    }>;
  };
};

/** Waits for things that take encoder and browser time on a busy machine: generous. */
const WAIT_MS = 40_000;
const FRAMES = 30;

describe('the /console page in Chromium', () => {
  let app: TestApp;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  const clients: StreamClient[] = [];

  beforeAll(async () => {
    // Chromium first: a machine without it fails here, with nothing started to clean up.
    browser = await launchChromium();
    await ensureClientBuilt();
    app = await startTestApp();
  });
  beforeEach(async () => {
    context = await browser.newContext();
    page = await context.newPage();
    errors = pageErrors(page);
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) {
      client.ws.terminate();
    }
    await context?.close();
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  it('finds a session by its transaction id, shows its timeline, plays its recording, and kicks a live connection with 4003', async () => {
    const transactionId = `TX-console-${randomUUID().slice(0, 8)}`;
    const images = await jpegFrames(320, 240, 10);
    const publisher = (sub: string) =>
      hsToken({ sub, channel: 'branch-app', scope: 'stream:publish' });

    // A finished session of the transaction: 3 s of real JPEG frames, a message, a recording.
    const recorded = await StreamClient.connect(app.url, { token: publisher('teller-1') });
    clients.push(recorded);
    const opened = await recorded.open({
      params: { transactionId, branch: 'north' },
      video: { width: 320, height: 240, fps: 10 },
    });
    recorded.sendFrame(1, 0, images[1]);
    await recorded.acksUntil(1);
    // Sent just after the first frame arrived: captioned near the start of the video.
    recorded.send({ type: 'msg', id: 'm1', body: { text: 'customer signed' } });
    await recorded.next('msg.ack');
    for (let seq = 2; seq <= FRAMES; seq++) {
      recorded.sendFrame(seq, (seq - 1) * 100, images[seq % images.length]);
    }
    await recorded.acksUntil(FRAMES);
    recorded.send({ type: 'close' });
    const closed = await recorded.next('closed', WAIT_MS);
    expect(closed.recording.status).toBe('ready');

    // A live session of another transaction, kept open.
    const live = await StreamClient.connect(app.url, { token: publisher('teller-2') });
    clients.push(live);
    const liveOpened = await live.open({
      params: { transactionId: `${transactionId}-other` },
      video: { width: 320, height: 240, fps: 10 },
    });
    live.sendFrame(1, 0, images[0]);
    await live.acksUntil(1);

    // Sign in with a pasted admin token.
    await page.goto(`${localhost(app.url)}/console`);
    await page.fill('#token', hsToken({ sub: 'ops-1', channel: 'ops', scope: 'admin' }));
    await page.click('#use-token');
    await page.waitForSelector('#view-sessions:not([hidden])');
    expect(await page.textContent('#whoami')).toContain('ops-1');

    // Search by the transaction parameter: only the recorded session matches.
    await page.fill('#f-transaction', transactionId);
    await page.click('#search');
    const row = `#session-results tr[data-session-id="${opened.sessionId}"]`;
    await page.waitForSelector(row, { timeout: WAIT_MS });
    expect(await page.locator('#session-results tbody tr').count()).toBe(1);
    expect(await page.textContent(row)).toContain('closed');

    // The session page: its timeline from the open to the close, its counts, its message.
    await page.click(`${row} a`);
    await page.waitForSelector('#timeline tr[data-kind="close"]', { timeout: WAIT_MS });
    const timeline = await page.textContent('#timeline');
    expect(timeline).toContain('accepted');
    expect(timeline).toContain('customer signed');
    expect(await page.locator('#timeline tr[data-kind="status"]').count()).toBeGreaterThanOrEqual(
      2,
    );
    expect(await page.textContent('#session-counts')).toContain(String(FRAMES));

    // It plays the recording: the player's clock advances.
    await page.waitForFunction(
      () => document.getElementById('recording').readyState >= 1,
      undefined,
      {
        timeout: WAIT_MS,
      },
    );
    await page.evaluate(() => document.getElementById('recording').play());
    await page.waitForFunction(
      () => document.getElementById('recording').currentTime > 0.5,
      undefined,
      { timeout: WAIT_MS },
    );

    // It shows the message as a caption from the moment it was sent (the .vtt as a <track>).
    const cue = await page.waitForFunction(
      () => {
        const track = document.getElementById('recording').textTracks[0];
        const first = track?.cues?.[0];
        return first
          ? { kind: track.kind, mode: track.mode, start: first.startTime, text: first.text }
          : null;
      },
      undefined,
      { timeout: WAIT_MS },
    );
    const shown = await cue.jsonValue();
    if (shown === null) {
      throw new Error('waitForFunction resolved without a cue');
    }
    const stored = await app.db.query<{ recording_ms: string }>(
      `SELECT recording_ms FROM session_messages WHERE session_id = $1 AND client_id = 'm1'`,
      [opened.sessionId],
    );
    expect(shown).toEqual({
      kind: 'captions',
      mode: 'showing',
      start: Number(stored.rows[0]?.recording_ms) / 1000,
      text: '<v client>customer signed</v>',
    });
    await page.evaluate((at) => {
      document.getElementById('recording').currentTime = at;
    }, shown.start + 0.1);
    await page.waitForFunction(
      () => {
        const active = document.getElementById('recording').textTracks[0]?.activeCues;
        return active?.[0]?.text === '<v client>customer signed</v>';
      },
      undefined,
      { timeout: WAIT_MS },
    );

    // Live connections: kick the live session's connection, confirming the dialog.
    await page.click('nav a[data-view="connections"]');
    const kick = `#connections tr[data-session-id="${liveOpened.sessionId}"] button[data-kick]`;
    await page.waitForSelector(kick, { timeout: WAIT_MS });
    page.once('dialog', (dialog) => void dialog.accept());
    await page.click(kick);
    expect((await live.closed).code).toBe(4003);
    // The kick's message outlives the view's 5 s auto-refresh, which may be in flight meanwhile.
    await page
      .waitForFunction(
        () => document.getElementById('connections-status').textContent.includes('Kicked'),
        undefined,
        { timeout: WAIT_MS },
      )
      .catch(async (err: unknown) => {
        const status = await page.textContent('#connections-status');
        throw new Error(`no kick message; the status line says ${JSON.stringify(status)}`, {
          cause: err,
        });
      });
    // The next auto-refresh repaints the line (its "as of" time moves on) and keeps the message.
    const painted = await page.textContent('#connections-status');
    await page.waitForFunction(
      (before) => document.getElementById('connections-status').textContent !== before,
      painted,
      { timeout: WAIT_MS },
    );
    expect(await page.textContent('#connections-status')).toContain('Kicked');
    await page.waitForSelector(kick, { state: 'detached', timeout: WAIT_MS });

    expect(errors).toEqual([]);
  });
});
