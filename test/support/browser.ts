import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { Closed } from '../../src/protocol/messages';
import { spooledFrames } from './spool-reader';
import { waitFor } from './wait';

/** The browser globals the page functions below use (the tests' tsconfig has no DOM library). */
declare const document: {
  addEventListener(type: string, listener: (event: { detail: Taken }) => void): void;
};
declare const window: { framegateTestTaken(media: Taken): void };

/** Debian's Chromium; CI installs it (.ci/run). */
export const CHROMIUM = '/usr/bin/chromium';

/** Chromium with a fake camera and microphone, granted without asking. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is missing at ${CHROMIUM}: the browser tests need Debian's chromium ` +
        '(apt-get install chromium; .ci/run installs it when it is missing)',
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/**
 * The page's address for a service URL: http://localhost:PORT, a secure context (camera, microphone
 * and AudioWorklet need one) with the same host the service's origin check sees.
 */
export function localhost(url: string): string {
  const u = new URL(url);
  u.hostname = 'localhost';
  return u.origin;
}

/** A media message the demo page's SDK took (`framegate:taken`). */
export interface Taken {
  seq: number;
  track: number;
  bytes: number;
  pts: number;
  /** A compressed key frame. */
  key: boolean;
}

/**
 * Collects what the demo announces as taken, across reloads: the listener is installed before the
 * page's own scripts on every navigation.
 */
export async function watchTaken(page: Page): Promise<Taken[]> {
  const taken: Taken[] = [];
  await page.exposeFunction('framegateTestTaken', (media: Taken) => taken.push(media));
  await page.addInitScript(() => {
    document.addEventListener('framegate:taken', (event) =>
      window.framegateTestTaken(event.detail),
    );
  });
  return taken;
}

/** Errors the page threw or logged, to show when a test fails. */
export function pageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') {
      errors.push(`console: ${msg.text()}`);
    }
  });
  page.on('requestfailed', (req) =>
    errors.push(`requestfailed: ${req.url()} ${req.failure()?.errorText}`),
  );
  return errors;
}

/** What the demo page shows of its session (`window.framegateDemo`, client/demo/demo-app.ts). */
export interface DemoState {
  /** Media messages the capture handed to the SDK in this page. */
  video: number;
  audio: number;
  /** The camera's settings now (the adaptive capture moves them). */
  cameraFps: number;
  quality: number;
  /** The video codec sent (`jpeg` or the encoder's codec string), and its bytes so far. */
  codec: string | null;
  videoBytes: number;
  /** The server's key-frame requests, with the seq the next frame was to get then. */
  keyframes: { reason: string; nextSeq: number }[];
  /** Chunks the server refused (`bad_frame`). */
  refusedFrames: number;
  state: string | null;
  transport: string | null;
  ackedSeq: number;
  nextSeq: number;
  outboxDepth: number;
  reconnects: number;
  resumed: boolean | null;
  closed: Closed | null;
  playing: boolean;
  error: string | null;
}

interface DemoWindow {
  framegateDemo: {
    client: {
      stats(): {
        state: string;
        transport: string;
        ackedSeq: number;
        nextSeq: number;
        outboxDepth: number;
        reconnects: number;
        refusedFrames: number;
      };
      flushed(): Promise<void>;
    } | null;
    session: {
      stats(): {
        video: number;
        audio: number;
        fps: number;
        quality: number;
        codec: string;
        videoBytes: number;
      };
      stop(): Promise<void>;
    } | null;
    resumed: boolean | null;
    keyframes: { reason: string; nextSeq: number }[];
    closed: Closed | null;
    playing: boolean;
    error: string | null;
  };
}

export function demoState(page: Page): Promise<DemoState> {
  return page.evaluate(() => {
    const demo = (window as unknown as DemoWindow).framegateDemo;
    const client = demo.client?.stats();
    const taken = demo.session?.stats();
    return {
      video: taken?.video ?? 0,
      audio: taken?.audio ?? 0,
      cameraFps: taken?.fps ?? 0,
      quality: taken?.quality ?? 0,
      codec: taken?.codec ?? null,
      videoBytes: taken?.videoBytes ?? 0,
      keyframes: demo.keyframes,
      refusedFrames: client?.refusedFrames ?? 0,
      state: client?.state ?? null,
      transport: client?.transport ?? null,
      ackedSeq: client?.ackedSeq ?? 0,
      nextSeq: client?.nextSeq ?? 0,
      outboxDepth: client?.outboxDepth ?? 0,
      reconnects: client?.reconnects ?? 0,
      resumed: demo.resumed,
      closed: demo.closed,
      playing: demo.playing,
      error: demo.error,
    };
  });
}

/** Waits until the demo's state passes `check`; an error shown on the page fails at once. */
export async function waitForDemo(
  page: Page,
  check: (state: DemoState) => boolean,
  what: string,
  timeoutMs = 40_000,
): Promise<DemoState> {
  let last: DemoState | null = null;
  await waitFor(
    async () => {
      last = await demoState(page);
      if (last.error !== null) {
        throw new Error(`the demo page failed while waiting for ${what}: ${last.error}`);
      }
      return check(last);
    },
    timeoutMs,
    what,
  );
  return last as unknown as DemoState;
}

/**
 * Opens /demo at `base`, pastes `token`, chooses the video codec (`auto`, `h264`, `vp9`, `vp8`,
 * `jpeg`: JPEG images unless told) and starts the camera and the microphone.
 */
export async function startDemo(
  page: Page,
  base: string,
  token: string,
  codec = 'jpeg',
): Promise<void> {
  await page.goto(`${localhost(base)}/demo`);
  await page.fill('#token', token);
  await page.selectOption('#codec', codec);
  await page.click('#start');
}

/** Stops the demo's session and waits until the page plays the recording; returns `closed`. */
export async function stopDemo(page: Page): Promise<Closed> {
  await page.click('#stop');
  const state = await waitForDemo(page, (s) => s.playing, 'the recording playing in the page');
  return state.closed as Closed;
}

/**
 * Pauses the demo's capture and waits until everything taken is in the IndexedDB outbox (what an
 * app does when its page is hidden); returns the client's stats then.
 */
export function pauseDemo(page: Page): Promise<DemoState> {
  return page
    .evaluate(async () => {
      const demo = (window as unknown as DemoWindow).framegateDemo;
      await demo.session?.stop();
      await demo.client?.flushed();
    })
    .then(() => demoState(page));
}

/**
 * The spool holds seqs 1..n once each, each with the track and size the page took: every frame
 * captured is stored exactly once, none invented.
 */
export async function expectStoredAsTaken(
  dataDir: string,
  sessionId: string,
  taken: readonly Taken[],
): Promise<void> {
  const spooled = await spooledFrames(dataDir, sessionId);
  const bySeq = [...taken].sort((a, b) => a.seq - b.seq);
  expect(spooled.map((f) => f.seq)).toEqual(bySeq.map((_, i) => i + 1));
  expect(spooled.map((f) => [f.seq, f.track, f.payload.length])).toEqual(
    bySeq.map((t) => [t.seq, t.track, t.bytes]),
  );
}
