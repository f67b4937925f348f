import type { Browser, BrowserContext, Page } from 'playwright-core';
import { Track } from '../src/protocol/media-header';
import { call, startTestApp, type TestApp } from './support/app';
import {
  expectStoredAsTaken,
  launchChromium,
  localhost,
  pageErrors,
  startDemo,
  stopDemo,
  waitForDemo,
  watchTaken,
} from './support/browser';
import { ensureClientBuilt } from './support/client-build';
import { probe } from './support/media';
import { hsToken } from './support/tokens';

/** The browser globals the page functions below use (the tests' tsconfig has no DOM library). */
declare const document: {
  getElementById(id: string): {
    currentTime: number;
    value: string;
    disabled: boolean;
    textContent: string;
    srcObject: unknown;
    textTracks: ArrayLike<{ cues: ArrayLike<{ text: string }> | null }>;
  };
};

describe('the /demo page in Chromium', () => {
  let app: TestApp;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    // Chromium first: a machine without it fails here, with nothing started to clean up.
    browser = await launchChromium();
    await ensureClientBuilt();
    app = await startTestApp({ env: { KEEP_SPOOL: 'true' } });
  });
  beforeEach(async () => {
    context = await browser.newContext();
    page = await context.newPage();
    errors = pageErrors(page);
  });
  afterEach(async () => {
    await context?.close();
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  it('records about 5 s of fake camera and microphone; the MP4 has every acknowledged frame and audio, and plays in the page', async () => {
    const taken = await watchTaken(page);
    await startDemo(
      page,
      app.url,
      hsToken({ sub: 'alice', channel: 'branch-app', scope: 'stream:publish recording:read' }),
    );
    // About 5 s at the demo's 10 fps; on a busy machine it takes longer, never fewer frames.
    await waitForDemo(page, (s) => s.video >= 50 && s.audio >= 10, '50 frames and 10 audio chunks');

    await page.fill('#message', 'customer signed');
    await page.click('#send');
    await page.waitForSelector('#message-list li.acked', { timeout: 20_000 });

    const closed = await stopDemo(page);
    expect(errors).toEqual([]);
    // The page plays it: the player's clock advances.
    const startedAt = await page.evaluate(() => document.getElementById('playback').currentTime);
    await page.waitForFunction(
      (t) => document.getElementById('playback').currentTime > t + 0.2,
      startedAt,
      { timeout: 20_000 },
    );

    const video = taken.filter((t) => t.track === (Track.Video as number));
    const audio = taken.filter((t) => t.track === (Track.Audio as number));
    expect(closed.frames).toBe(taken.length);
    expect(closed.recording.status).toBe('ready');
    await expectStoredAsTaken(app.dataDir, closed.sessionId, taken);

    const row = await app.db.query<{ path: string }>(
      'SELECT path FROM recordings WHERE session_id = $1',
      [closed.sessionId],
    );
    const probed = await probe(row.rows[0].path);
    // Every acknowledged video frame is one frame of the MP4; the microphone is its audio.
    expect(probed.videoFrames).toBe(video.length);
    expect(audio.length).toBeGreaterThan(0);
    expect(probed.audioCodec).toBe('aac');

    const messages = await app.db.query<{ body: { text: string } }>(
      `SELECT body FROM session_messages WHERE session_id = $1 AND direction = 'in'`,
      [closed.sessionId],
    );
    expect(messages.rows.map((r) => r.body.text)).toEqual(['customer signed']);
    // The page shows it as a caption of the recording.
    await page.waitForFunction(
      () => document.getElementById('playback').textTracks[0]?.cues?.[0]?.text,
      undefined,
      { timeout: 20_000 },
    );
    expect(
      await page.evaluate(() => document.getElementById('playback').textTracks[0]?.cues?.[0]?.text),
    ).toBe('<v client>customer signed</v>');
  });

  it('shows a refused token as the final invalid_token, lets go of the camera and does not retry on reload', async () => {
    await startDemo(
      page,
      app.url,
      hsToken({ secret: 'not-the-secret-of-this-service-0123456789' }),
    );
    await page.waitForFunction(
      () => document.getElementById('start').disabled === false,
      undefined,
      {
        timeout: 20_000,
      },
    );
    const shown = await page.evaluate(() => document.getElementById('status').textContent);
    expect(shown).toMatch(/^invalid_token: /);
    expect(await page.evaluate(() => document.getElementById('preview').srcObject)).toBeNull();
    await page.reload();
    await page.waitForFunction(() => /^ready/.test(document.getElementById('status').textContent));
  });

  it('mints a development token only when the service runs on its development secret', async () => {
    expect(await call(app.url, 'POST', '/demo/token')).toMatchObject({
      status: 404,
      body: { error: 'not_found' },
    });
    const dev = await startTestApp({ env: { AUTH_JWT_SECRET: undefined } });
    try {
      await page.goto(`${localhost(dev.url)}/demo`);
      await page.click('#mint');
      await page.waitForFunction(() => document.getElementById('token').value.length > 0);
      const token = await page.evaluate(() => document.getElementById('token').value);
      // The minted token is a working one: a ticket needs stream:publish.
      expect((await call(dev.url, 'POST', '/v1/tickets', { token })).status).toBe(201);
      const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
      expect(claims).toMatchObject({
        sub: expect.stringMatching(/^demo-/),
        channel: 'demo',
        scope: 'stream:publish recording:read',
      });
    } finally {
      await dev.close();
    }
    expect(errors).toEqual([]);
  });

  it('serves the page with a CSP and no inline script, and only runtime-clean modules', async () => {
    const res = await fetch(`${app.url}/demo/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await res.text();
    expect(html).toContain('name="viewport"');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    // Every module the page loads, followed through its imports: relative, and no Node built-in.
    const seen = new Set<string>();
    const queue = [new URL('/demo/sdk/client/demo/demo-app.js', app.url).href];
    queue.push(new URL('/demo/sdk/client/src/capture/pcm-worklet.js', app.url).href);
    while (queue.length > 0) {
      const url = queue.pop() as string;
      if (seen.has(url)) {
        continue;
      }
      seen.add(url);
      const module = await fetch(url);
      expect({ url, status: module.status }).toEqual({ url, status: 200 });
      expect(module.headers.get('content-type')).toMatch(/javascript/);
      const source = await module.text();
      for (const [, specifier] of source.matchAll(
        /^\s*(?:import|export)[^'"]*?from\s+'([^']+)'/gm,
      )) {
        expect({ url, specifier }).toEqual({ url, specifier: expect.stringMatching(/^\.\.?\//) });
        queue.push(new URL(specifier, url).href);
      }
      expect(source).not.toMatch(/\bimport\(\s*['"]node:/);
    }
    expect(seen.size).toBeGreaterThan(10);
  });
});
