import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { ALL_FORMATS, BufferSource, EncodedPacketSink, Input } from 'mediabunny';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { locateTool } from '../src/media/ffmpeg-locator';
import { Track } from '../src/protocol/media-header';
import { call, startTestApp, type TestApp } from './support/app';
import {
  demoState,
  expectStoredAsTaken,
  launchChromium,
  localhost,
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

/** The browser globals the page functions below use (the tests' tsconfig has no DOM library). */
declare const document: {
  getElementById(id: string): {
    currentTime: number;
    videoWidth: number;
    readyState: number;
    src: string;
  };
};
declare const window: {
  framegateDemo: { session: { stats(): { audioCodec: string | null } } };
};
declare const VideoEncoder: {
  isConfigSupported(config: Record<string, unknown>): Promise<{ supported?: boolean }>;
};

const run = promisify(execFile);

/** What the page measured of one VideoChunkEncoder. */
interface EncoderRun {
  codec: string;
  /** Each chunk's key flag, and whether it came after the `adapt`. */
  chunks: { key: boolean; after: boolean }[];
  events: string[];
  bitrate: number;
  size: [number, number];
  description: number[] | null;
}
const FFMPEG = locateTool('ffmpeg', undefined).path;
const FFPROBE = locateTool('ffprobe', undefined).path;
/** The demo's camera rate: one frame interval is the duration's tolerance. */
const FRAME_INTERVAL_MS = 100;

/**
 * The demo in Debian's Chromium with a fake camera, sending compressed video from WebCodecs'
 * VideoEncoder: H.264 where this Chromium encodes it, VP9 otherwise (the demo's `auto`). The
 * recordings are the chunks as sent, read back with ffprobe and ffmpeg.
 */
describe('the /demo page with VideoEncoder (Chromium)', () => {
  let app: TestApp;
  let browser: Browser;
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
    context = await browser.newContext();
    page = await context.newPage();
    errors = pageErrors(page);
    taken = await watchTaken(page);
  });
  afterEach(async () => {
    await context?.close();
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  const videoTaken = () => taken.filter((t) => t.track === (Track.Video as number));
  const audioTaken = () => taken.filter((t) => t.track === (Track.Audio as number));
  /** Milliseconds between the first and the last video frame taken. */
  const span = () => {
    const pts = videoTaken().map((t) => t.pts);
    return pts.length > 1 ? Math.max(...pts) - Math.min(...pts) : 0;
  };

  /** The audio codec the demo's capture sends. */
  const audioCodec = () => page.evaluate(() => window.framegateDemo.session.stats().audioCodec);

  /** The codec `auto` must pick in this Chromium: H.264 if it encodes it, else VP9. */
  async function expectedCodec(): Promise<'h264' | 'vp9'> {
    const h264 = await page.evaluate(
      async () =>
        (
          await VideoEncoder.isConfigSupported({
            codec: 'avc1.42001e',
            width: 640,
            height: 480,
            bitrate: 300_000,
            framerate: 10,
          })
        ).supported === true,
    );
    return h264 ? 'h264' : 'vp9';
  }

  async function recordingPath(sessionId: string): Promise<string> {
    const row = await app.db.query<{ path: string; status: string }>(
      'SELECT path, status FROM recordings WHERE session_id = $1',
      [sessionId],
    );
    expect(row.rows[0].status).toBe('ready');
    return row.rows[0].path;
  }

  /**
   * What ffmpeg reports while decoding the recording end to end. `-vsync vfr`: the null muxer
   * takes the frames on a 1/frame-rate clock, and by default reports two frames of this
   * variable-rate capture closer than one tick as "non monotonically increasing dts" (ffmpeg 4
   * and 5.1 alike) though each decoded; vfr lets the muxer skip one of them after decoding.
   */
  async function decodeErrors(path: string): Promise<string> {
    const args = ['-v', 'error', '-i', path, '-vsync', 'vfr', '-f', 'null', '-'];
    return (await run(FFMPEG, args)).stderr;
  }

  /**
   * How long a track of the recording lasts, ms: from its first sample's time to its last
   * sample's end, by the MP4's sample table (mediabunny). The file's duration is the longer
   * track's (the Opus track may end after the video: its last packet is padded), and this
   * ffprobe lists no packet durations for these fragmented files.
   */
  async function trackDuration(path: string, kind: 'video' | 'audio'): Promise<number> {
    const input = new Input({ source: new BufferSource(readFileSync(path)), formats: ALL_FORMATS });
    const track =
      kind === 'video' ? await input.getPrimaryVideoTrack() : await input.getPrimaryAudioTrack();
    if (!track) {
      throw new Error(`${path} has no ${kind} track`);
    }
    let start = Infinity;
    let end = -Infinity;
    for await (const packet of new EncodedPacketSink(track).packets()) {
      start = Math.min(start, packet.timestamp);
      end = Math.max(end, packet.timestamp + packet.duration);
    }
    return Math.round((end - start) * 1000);
  }

  /** Presentation times of the recording's video packets, in ms, as ffprobe lists them. */
  async function packetTimes(path: string): Promise<number[]> {
    const { stdout } = await run(FFPROBE, [
      '-v',
      'error',
      '-select_streams',
      'v:0',
      '-show_entries',
      'packet=pts_time',
      '-of',
      'csv=p=0',
      path,
    ]);
    return stdout
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => Math.round(Number.parseFloat(line) * 1000));
  }

  it('records 10 s: the MP4 holds every acknowledged frame over the capture span, in the chosen codec, and plays in a <video>', async () => {
    await startDemo(page, app.url, token, 'auto');
    // Asked in the page: WebCodecs needs its secure context (http://localhost).
    const codec = await expectedCodec();
    await waitForDemo(page, () => span() >= 10_000, '10 s of video taken', 90_000);
    const during = await demoState(page);
    expect(during.codec).toMatch(codec === 'h264' ? /^avc1\./ : /^vp09\./);
    const closed = await stopDemo(page);
    expect(errors).toEqual([]);

    const video = videoTaken();
    expect(closed.frames).toBe(taken.length);
    expect(video[0].key).toBe(true);
    await expectStoredAsTaken(app.dataDir, closed.sessionId, taken);
    const path = await recordingPath(closed.sessionId);
    const probed = await probe(path);
    expect(probed.videoCodec).toBe(codec);
    expect(probed.videoFrames).toBe(video.length);
    expect([probed.width, probed.height]).toEqual([640, 480]);
    // The recording lasts from the first frame's capture to the last's, and the last frame's own
    // nominal interval (1 ms for the rounding of ffprobe's seconds).
    const videoDurationMs = await trackDuration(path, 'video');
    expect(videoDurationMs).toBeGreaterThanOrEqual(span());
    expect(videoDurationMs - span()).toBeLessThanOrEqual(FRAME_INTERVAL_MS + 1);
    // Far fewer bytes than JPEG's ~25 KB a frame at 640×480.
    expect((await demoState(page)).videoBytes / video.length).toBeLessThan(10_000);

    // The page plays it: a picture, and a clock that advances.
    const playback = await page.evaluate(() => {
      const v = document.getElementById('playback');
      return { width: v.videoWidth, readyState: v.readyState, currentTime: v.currentTime };
    });
    expect(playback.width).toBe(640);
    expect(playback.readyState).toBeGreaterThanOrEqual(2);
    await page.waitForFunction(
      (t) => document.getElementById('playback').currentTime > t + 0.2,
      playback.currentTime,
      { timeout: 20_000 },
    );
  });

  it('sends the fake microphone as Opus beside H.264/VP9: the MP4 has an Opus track as long as the video, every acknowledged frame, and decodes without an error', async () => {
    await startDemo(page, app.url, token, 'auto');
    const codec = await expectedCodec();
    await waitForDemo(
      page,
      () => span() >= 4_000 && audioTaken().length >= 20,
      '4 s of video and 20 Opus packets taken',
    );
    expect(await audioCodec()).toBe('opus');
    const closed = await stopDemo(page);
    expect(errors).toEqual([]);

    expect(closed.frames).toBe(taken.length);
    await expectStoredAsTaken(app.dataDir, closed.sessionId, taken);
    // Opus packets of 60 ms at 32 kbit/s, where 100 ms of PCM took 9600 bytes.
    expect(Math.max(...audioTaken().map((t) => t.bytes))).toBeLessThan(1_000);
    const path = await recordingPath(closed.sessionId);
    const probed = await probe(path);
    expect(probed.videoCodec).toBe(codec);
    expect(probed.audioCodec).toBe('opus');
    expect(probed.videoFrames).toBe(videoTaken().length);
    const audioMs = await trackDuration(path, 'audio');
    const videoMs = await trackDuration(path, 'video');
    expect(Math.abs(audioMs - videoMs)).toBeLessThanOrEqual(200);
    expect(await decodeErrors(path)).toBe('');
  });

  it('resumes after the connection is cut mid-session, answers the key-frame request, and the recording decodes end to end', async () => {
    const proxy = await TcpProxy.start(app.url);
    try {
      await startDemo(page, proxy.url, token, 'auto');
      const before = await waitForDemo(page, (s) => s.ackedSeq >= 30, 'ack 30');
      expect(proxy.cut()).toBeGreaterThanOrEqual(1);
      const resumed = await waitForDemo(
        page,
        (s) =>
          s.reconnects >= 1 &&
          s.state === 'open' &&
          s.keyframes.some((k) => k.reason === 'resume') &&
          s.ackedSeq >= before.nextSeq + 30,
        'a resumed session asked for a key frame and acknowledging 30 more frames',
      );
      const request = resumed.keyframes.find((k) => k.reason === 'resume')!;
      // The answer: a key frame taken after the request.
      expect(videoTaken().some((t) => t.key && t.seq >= request.nextSeq)).toBe(true);
      const closed = await stopDemo(page);
      expect(closed.frames).toBe(taken.length);
      expect((await demoState(page)).refusedFrames).toBe(0);
      await expectStoredAsTaken(app.dataDir, closed.sessionId, taken);

      const path = await recordingPath(closed.sessionId);
      expect(await decodeErrors(path)).toBe('');
      expect((await probe(path)).videoFrames).toBe(videoTaken().length);
      const times = await packetTimes(path);
      expect(times).toHaveLength(videoTaken().length);
      expect(new Set(times).size).toBe(times.length);
    } finally {
      await proxy.close();
    }
  });

  it('lowers the bitrate while acks stop coming and restores it once they flow again; the recording decodes', async () => {
    const proxy = await TcpProxy.start(app.url);
    try {
      await startDemo(page, proxy.url, token, 'auto');
      const before = await waitForDemo(page, (s) => s.ackedSeq >= 20, 'ack 20');
      expect(before.quality).toBe(1);
      // A dead link: more than 2 s of messages pile up unacknowledged, one step down a second.
      proxy.freeze({ webSocketsOnly: true });
      await waitForDemo(page, (s) => s.quality <= 0.8, 'the bitrate lowered twice');
      proxy.thaw();
      await waitForDemo(
        page,
        (s) => s.reconnects >= 1 && s.quality === 1,
        'the bitrate restored',
        60_000,
      );
      const closed = await stopDemo(page);
      expect(closed.frames).toBe(taken.length);
      await expectStoredAsTaken(app.dataDir, closed.sessionId, taken);
      const path = await recordingPath(closed.sessionId);
      expect(await decodeErrors(path)).toBe('');
      expect((await probe(path)).videoFrames).toBe(videoTaken().length);
    } finally {
      await proxy.close();
    }
  });

  it('streams compressed video over HTTP when a proxy refuses WebSocket upgrades', async () => {
    const proxy = await TcpProxy.start(app.url);
    try {
      proxy.refuseUpgrades = true;
      await startDemo(page, proxy.url, token, 'auto');
      const streaming = await waitForDemo(
        page,
        (s) => s.ackedSeq >= 50 && s.video >= 30,
        '50 messages acknowledged over HTTP',
      );
      expect(streaming.transport).toBe('http');
      expect(streaming.codec).toMatch(/^(avc1|vp09)\./);
      const closed = await stopDemo(page);
      expect(closed.frames).toBe(taken.length);
      await expectStoredAsTaken(app.dataDir, closed.sessionId, taken);
      const path = await recordingPath(closed.sessionId);
      expect(await decodeErrors(path)).toBe('');
      expect((await probe(path)).videoFrames).toBe(videoTaken().length);
      // Chromium reports the refused upgrade on the console; nothing else went wrong.
      expect(errors.filter((e) => !/WebSocket connection to .* failed/.test(e))).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it('continues an H.264/VP9 session after a page reload: same codec and avcC, every chunk once, one decodable recording', async () => {
    await startDemo(page, app.url, token, 'auto');
    const codec = (await waitForDemo(page, (s) => s.ackedSeq >= 20, 'ack 20')).codec;
    expect(codec).toMatch(/^(avc1|vp09)\./);
    const beforeReload = await pauseDemo(page);
    const takenBefore = taken.length;
    expect(takenBefore).toBe(beforeReload.nextSeq - 1);

    // The page comes back with JPEG chosen: the session in force decides, not the selector.
    await page.evaluate(`(() => {
      const stored = JSON.parse(sessionStorage.getItem('framegate-demo'));
      sessionStorage.setItem('framegate-demo', JSON.stringify({ ...stored, codec: 'jpeg' }));
    })()`);
    await page.reload();
    const after = await waitForDemo(
      page,
      (s) => s.resumed === true && s.state === 'open' && s.video >= 20,
      'the reloaded page resumed and captured 20 frames',
    );
    expect(after.codec).toBe(codec);
    expect(await audioCodec()).toBe('opus');
    expect(taken[takenBefore].seq).toBe(beforeReload.nextSeq);
    expect(taken[takenBefore].key).toBe(true);
    const closed = await stopDemo(page);
    expect(closed.frames).toBe(taken.length);
    expect((await demoState(page)).refusedFrames).toBe(0);
    await expectStoredAsTaken(app.dataDir, closed.sessionId, taken);
    const path = await recordingPath(closed.sessionId);
    expect(await decodeErrors(path)).toBe('');
    expect((await probe(path)).videoFrames).toBe(videoTaken().length);
  });

  it("adapts the encoder's bitrate without changing H.264's avcC, and VP9's size from a key frame", async () => {
    await page.goto(`${localhost(app.url)}/demo`);
    // The SDK's encoder on WebCodecs in the page: frames of a canvas, 10 a second of media time.
    const measured = await page.evaluate<{
      h264: EncoderRun | null;
      againDescription: number[] | null;
      vp9: EncoderRun | null;
    }>(`(async () => {
      const { VideoChunkEncoder } = await import('/demo/sdk/client/src/capture/video-chunk-encoder.js');
      const canvas = new OffscreenCanvas(640, 480);
      const context = canvas.getContext('2d');
      let n = 0;
      const grab = () => {
        n++;
        context.fillStyle = 'hsl(' + ((n * 17) % 360) + ', 70%, 50%)';
        context.fillRect(0, 0, 640, 480);
        context.fillStyle = '#fff';
        context.fillRect((n * 13) % 600, 200, 40, 40);
        const capturedAt = 1_700_000_000_000 + n * 100;
        return { frame: new VideoFrame(canvas, { timestamp: capturedAt * 1000 }), capturedAt };
      };
      const settings = { width: 640, height: 480, fps: 10, bitrate: 400_000 };
      const run = async (codec, rate) => {
        const encoder = await VideoChunkEncoder.create(codec, settings, grab);
        if (!encoder) {
          return null;
        }
        const chunks = [];
        const events = [];
        encoder.on('chunk', (c) => chunks.push({ key: c.key, after: chunks.length >= 10 }));
        encoder.on('recovered', (why) => events.push('recovered: ' + why));
        encoder.on('dropped', () => events.push('dropped'));
        encoder.requestKeyFrame();
        for (let i = 0; i < 20; i++) {
          if (i === 10) {
            await encoder.flush();
            encoder.adapt(rate, 5);
          }
          encoder.encode(grab());
          await encoder.flush();
        }
        const description = encoder.description ? Array.from(encoder.description) : null;
        const result = { codec: encoder.codec, chunks, events, bitrate: encoder.bitrate,
          size: [encoder.codedWidth, encoder.codedHeight], description };
        encoder.close();
        return result;
      };
      const h264 = await run('h264', { bitrate: 150_000, width: 640, height: 480 });
      const again = h264 && (await VideoChunkEncoder.create('h264', settings, grab));
      const vp9 = await run('vp9', { bitrate: 150_000, width: 320, height: 240 });
      return { h264, againDescription: again ? Array.from(again.description) : null, vp9 };
    })()`);
    if (measured.h264) {
      // A new bitrate and frame rate: every chunk delivered, none with another avcC.
      expect(measured.h264.events).toEqual([]);
      expect(measured.h264.chunks).toHaveLength(20);
      expect(measured.h264.chunks[0].key).toBe(true);
      expect(measured.h264.bitrate).toBe(150_000);
      expect(measured.h264.size).toEqual([640, 480]);
      // A new encoder with the same configuration makes the same avcC (a reloaded page relies
      // on it to continue an H.264 session).
      expect(measured.againDescription).toEqual(measured.h264.description);
    } else {
      expect(measured.vp9).not.toBeNull();
    }
    // VP9 at a quarter of the pixels: the first chunk after the change is a key frame.
    const vp9 = measured.vp9!;
    expect(vp9.events).toEqual([]);
    expect(vp9.size).toEqual([320, 240]);
    expect(vp9.chunks).toHaveLength(20);
    expect(vp9.chunks.find((c) => c.after)?.key).toBe(true);
    expect(errors).toEqual([]);
  });

  it('configures a new encoder after an encode fails, and goes on from a key frame', async () => {
    await page.goto(`${localhost(app.url)}/demo`);
    const outcome = await page.evaluate<{
      handed: boolean[];
      events: string[];
      keys: boolean[];
    }>(`(async () => {
      const { VideoChunkEncoder } = await import('/demo/sdk/client/src/capture/video-chunk-encoder.js');
      const canvas = new OffscreenCanvas(320, 240);
      const context = canvas.getContext('2d');
      let n = 0;
      const grab = () => {
        n++;
        context.fillStyle = 'hsl(' + ((n * 23) % 360) + ', 70%, 50%)';
        context.fillRect(0, 0, 320, 240);
        const capturedAt = 1_700_000_000_000 + n * 100;
        return { frame: new VideoFrame(canvas, { timestamp: capturedAt * 1000 }), capturedAt };
      };
      const encoder = await VideoChunkEncoder.create(
        'auto', { width: 320, height: 240, fps: 10, bitrate: 200_000 }, grab);
      const events = [];
      const keys = [];
      encoder.on('chunk', (c) => keys.push(c.key));
      encoder.on('recovered', () => events.push('recovered'));
      encoder.on('failed', () => events.push('failed'));
      const handed = [];
      for (let i = 0; i < 6; i++) {
        const captured = grab();
        if (i === 3) {
          // A frame closed before it is encoded: VideoEncoder.encode throws.
          captured.frame.close();
        }
        handed.push(encoder.encode(captured));
        await encoder.flush();
      }
      encoder.close();
      return { handed, events, keys };
    })()`);
    expect(outcome.handed).toEqual([true, true, true, false, true, true]);
    expect(outcome.events).toEqual(['recovered']);
    // The first chunk, then the first of the new encoder, are key frames.
    expect(outcome.keys).toEqual([true, false, false, true, false]);
  });

  it("stamps Opus packets with their samples' capture time after a gap and while the page's clock drifts from the sound card's", async () => {
    await page.goto(`${localhost(app.url)}/demo`);
    // 100 ms PCM chunks as the microphone gives them, dated in ms from 0: five in a row, five
    // after a 600 ms gap, then 25 on a page clock 2 % faster than the samples.
    const chunks = [
      ...Array.from({ length: 5 }, (_, i) => i * 100),
      ...Array.from({ length: 5 }, (_, i) => 1_000 + i * 100),
      ...Array.from({ length: 25 }, (_, i) => 2_000 + i * 102),
    ];
    const packets = await page.evaluate<{ at: number; bytes: number }[]>(
      `(async (chunks) => {
        const { OpusChunkEncoder } = await import('/demo/sdk/client/src/capture/opus-chunk-encoder.js');
        const encoder = await OpusChunkEncoder.create(48000, 1);
        const packets = [];
        encoder.on('chunk', (c) => packets.push({ at: c.capturedAt - 1_700_000_000_000, bytes: c.data.length }));
        let n = 0;
        for (const at of chunks) {
          const pcm = new Int16Array(4800);
          for (let i = 0; i < pcm.length; i++, n++) {
            pcm[i] = Math.round(8000 * Math.sin(n / 10));
          }
          // Handed over as the microphone would, without a flush (which would re-stamp each).
          while (encoder.busy) {
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
          encoder.encode({ pcm: new Uint8Array(pcm.buffer), capturedAt: 1_700_000_000_000 + at });
        }
        await encoder.flush();
        encoder.close();
        return packets;
      })(${JSON.stringify(chunks)})`,
    );
    const times = packets.map((p) => Math.round(p.at));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(new Set(times).size).toBe(times.length);
    // After the gap, packets start at the chunk's time. Under the drift the skew grows 2 ms a
    // chunk and passes 20 ms at the 12th (3122 ms) and 23rd (4244 ms): packets start there again,
    // where counting samples alone would have them 22 ms early.
    expect(times).toEqual(expect.arrayContaining([0, 1_000, 2_000, 3_122, 4_244]));
    expect(times.filter((t) => (t > 500 && t < 1_000) || (t > 1_500 && t < 2_000))).toEqual([]);
    expect(packets.every((p) => p.bytes > 0 && p.bytes < 1_000)).toBe(true);
    expect(errors).toEqual([]);
  });

  it('falls back to JPEG when the channel takes no compressed video', async () => {
    const set = await call(app.url, 'PUT', '/v1/admin/channels/jpeg-only/quota', {
      token: hsToken({ sub: 'ops', scope: 'admin' }),
      body: { videoCodecs: ['jpeg'] },
    });
    expect(set.status).toBe(200);
    const jpegOnly = hsToken({
      sub: 'bob',
      channel: 'jpeg-only',
      scope: 'stream:publish recording:read',
    });
    await startDemo(page, app.url, jpegOnly, 'h264');
    const state = await waitForDemo(page, (s) => s.ackedSeq >= 20, 'ack 20');
    expect(state.codec).toBe('jpeg');
    // The server takes Opus beside compressed video only.
    expect(await audioCodec()).toBe('pcm');
    expect(videoTaken().every((t) => !t.key)).toBe(true);
    const closed = await stopDemo(page);
    expect((await probe(await recordingPath(closed.sessionId))).videoFrames).toBe(
      videoTaken().length,
    );
    expect(errors).toEqual([]);
  });
});
