import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import sharp from 'sharp';
import { startTestApp, type TestApp } from './support/app';
import { launchChromium, localhost, pageErrors } from './support/browser';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';

/** The browser globals the page function below uses (the tests' tsconfig has no DOM library). */
declare const document: {
  body: { append(node: unknown): void };
  createElement(tag: 'video'): PageVideo;
  createElement(tag: 'canvas'): PageCanvas;
};
declare const URL: { createObjectURL(blob: unknown): string };
declare function fetch(
  url: string,
  init: { headers: Record<string, string> },
): Promise<{ ok: boolean; status: number; blob(): Promise<unknown> }>;
interface PageVideo {
  id: string;
  src: string;
  muted: boolean;
  currentTime: number;
  videoWidth: number;
  videoHeight: number;
  error: { code: number } | null;
  play(): Promise<void>;
  pause(): void;
  addEventListener(type: string, listener: () => void, options?: { once: boolean }): void;
}
interface PageCanvas {
  width: number;
  height: number;
  getContext(type: '2d'): {
    drawImage(source: PageVideo, x: number, y: number): void;
    getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  };
}

const run = promisify(execFile);

/** Both supported ffmpeg builds: the static one the package ships, and Debian's. */
const BUILDS = {
  bundled: {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    ffmpeg: (require('@ffmpeg-installer/ffmpeg') as { path: string }).path,
  },
  debian: { ffmpeg: '/usr/bin/ffmpeg' },
} as const;
type Build = keyof typeof BUILDS;

const WIDTH = 640;
const HEIGHT = 480;
/** 12 s at 10 fps: three keyframes (every 5 s), so more than one fragment. */
const FRAMES = 120;
/** A mid-tone wall: where a player that ignored the full-range flag would shift every level. */
const WALL = { r: 180, g: 120, b: 60 };
/** The corner sampled for colour, away from the moving disc. */
const CORNER = { x: 8, y: 8, size: 48 };
/**
 * How far a decoded level may be from the JPEG's: x264's loss on a flat wall is a level or two.
 * Reading the full-range stream as limited range moves this wall's red up by 9 levels and its blue
 * down by 7 (Chromium did so with Debian's ffmpeg's streams until their colour description was
 * written whole).
 */
const LEVEL_TOLERANCE = 6;

/** A wall with a disc crossing it: motion for the encoder, a flat corner for the colour check. */
function frames(): Promise<Buffer[]> {
  return Promise.all(
    Array.from({ length: FRAMES }, (_, i) =>
      sharp({ create: { width: WIDTH, height: HEIGHT, channels: 3, background: WALL } })
        .composite([
          {
            input: Buffer.from(
              `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}">` +
                `<circle cx="${120 + (i * 400) / FRAMES}" cy="${HEIGHT / 2}" r="70" fill="#2050d0"/></svg>`,
            ),
          },
        ])
        .jpeg({ quality: 80 })
        .toBuffer(),
    ),
  );
}

/** Mean of each RGB channel over the corner of an RGB24 frame. */
function cornerMean(rgb: Uint8Array | Uint8ClampedArray, width: number, channels: number) {
  const sum = [0, 0, 0];
  for (let y = CORNER.y; y < CORNER.y + CORNER.size; y++) {
    for (let x = CORNER.x; x < CORNER.x + CORNER.size; x++) {
      for (let c = 0; c < 3; c++) {
        sum[c] += rgb[(y * width + x) * channels + c];
      }
    }
  }
  const n = CORNER.size * CORNER.size;
  return { r: sum[0] / n, g: sum[1] / n, b: sum[2] / n };
}

function expectLevelsNear(actual: { r: number; g: number; b: number }): void {
  for (const c of ['r', 'g', 'b'] as const) {
    expect(Math.abs(actual[c] - WALL[c])).toBeLessThanOrEqual(LEVEL_TOLERANCE);
  }
}

/**
 * A JPEG session recorded with the service's encoder settings (full-range 4:2:0, a keyframe every
 * 5 s), once with each ffmpeg build as the encoder: each recording decodes with both builds to
 * every frame in the right colours, and plays in Chromium.
 */
describe.each(Object.keys(BUILDS) as Build[])('a recording encoded by the %s ffmpeg', (encoder) => {
  let app: TestApp;
  let browser: Browser;
  let sessionId: string;
  let path: string;
  const token = hsToken({
    sub: 'alice',
    channel: 'branch-app',
    scope: 'stream:publish recording:read',
  });

  beforeAll(async () => {
    // Chromium first: a machine without it fails here, with nothing started to clean up.
    browser = await launchChromium();
    app = await startTestApp({ env: { FFMPEG_PATH: BUILDS[encoder].ffmpeg } });
    const jpegs = await frames();
    const client = await StreamClient.connect(app.url, { token });
    try {
      ({ sessionId } = await client.open({ video: { width: WIDTH, height: HEIGHT, fps: 10 } }));
      jpegs.forEach((jpeg, i) => client.sendFrame(i + 1, i * 100, jpeg));
      await client.acksUntil(FRAMES);
      client.send({ type: 'close' });
      const closed = await client.next('closed', 60_000);
      expect(closed.recording.status).toBe('ready');
    } finally {
      client.ws.terminate();
    }
    const row = await app.db.query<{ path: string }>(
      'SELECT path FROM recordings WHERE session_id = $1',
      [sessionId],
    );
    path = row.rows[0].path;
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  it.each(Object.keys(BUILDS) as Build[])(
    'decodes with the %s ffmpeg to every frame, without an error, in the JPEGs’ colours',
    async (decoder) => {
      const ffmpeg = BUILDS[decoder].ffmpeg;
      const md5 = await run(ffmpeg, [
        '-v',
        'error',
        '-i',
        path,
        '-map',
        '0:v:0',
        '-f',
        'framemd5',
        '-',
      ]);
      expect(md5.stderr).toBe('');
      expect(md5.stdout.split('\n').filter((line) => /^\s*0,/.test(line))).toHaveLength(FRAMES);
      const first = await run(
        ffmpeg,
        ['-v', 'error', '-i', path, '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'],
        { encoding: 'buffer', maxBuffer: WIDTH * HEIGHT * 3 + 1024 },
      );
      expect(first.stdout).toHaveLength(WIDTH * HEIGHT * 3);
      expectLevelsNear(cornerMean(first.stdout, WIDTH, 3));
    },
  );

  it('plays in Chromium: the clock advances and the picture has the JPEGs’ colours', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const errors = pageErrors(page);
      // The service has no favicon: the browser's own request for it is not the page's error.
      await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204 }));
      // Any page of the service: the recording is fetched from the same origin, with the token.
      await page.goto(`${localhost(app.url)}/health/live`);
      const played = await page.evaluate(
        async ({ url, auth, corner }) => {
          const res = await fetch(url, { headers: { authorization: auth } });
          if (!res.ok) {
            return { error: `GET answered ${res.status}` };
          }
          const video = document.createElement('video');
          video.muted = true;
          video.src = URL.createObjectURL(await res.blob());
          document.body.append(video);
          await video.play();
          const startedAt = video.currentTime;
          await new Promise<void>((resolve) => {
            const check = (): void => {
              if (video.currentTime > startedAt + 1) {
                resolve();
              } else {
                video.addEventListener('timeupdate', check, { once: true });
              }
            };
            check();
          });
          video.pause();
          const canvas = document.createElement('canvas');
          canvas.width = video.videoWidth;
          canvas.height = video.videoHeight;
          const ctx = canvas.getContext('2d');
          ctx.drawImage(video, 0, 0);
          const data = ctx.getImageData(0, 0, corner.x + corner.size, corner.y + corner.size).data;
          return {
            startedAt,
            currentTime: video.currentTime,
            width: video.videoWidth,
            height: video.videoHeight,
            mediaError: video.error?.code ?? null,
            corner: Array.from(data),
            cornerWidth: corner.x + corner.size,
          };
        },
        {
          url: `/v1/sessions/${sessionId}/recording`,
          auth: `Bearer ${token}`,
          corner: CORNER,
        },
      );
      if ('error' in played) {
        throw new Error(played.error);
      }
      expect(errors).toEqual([]);
      expect(played).toMatchObject({ width: WIDTH, height: HEIGHT, mediaError: null });
      expect(played.currentTime).toBeGreaterThan(played.startedAt + 1);
      expectLevelsNear(cornerMean(Uint8Array.from(played.corner), played.cornerWidth, 4));
    } finally {
      await context.close();
    }
  });
});
