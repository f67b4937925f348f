import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ALL_FORMATS, FilePathSource, Input } from 'mediabunny';
import sharp from 'sharp';
import { testDir } from '../../test/support/dirs';
import fc from 'fast-check';
import { AdtsSplitter, audioSpecificConfig, type AdtsFrameInfo } from './adts-stream';
import { AudioEncoderProcess } from './audio-encoder';
import { locateTool } from './ffmpeg-locator';
import { isKeyframe } from './h264-stream';
import { LiveMp4Writer } from './mp4-writer';
import { probeRecording } from './prober';
import { VideoEncoderProcess } from './video-encoder';

const FFMPEG = locateTool('ffmpeg', process.env.FFMPEG_PATH).path;
const FFPROBE = locateTool('ffprobe', process.env.FFPROBE_PATH).path;
const run = promisify(execFile);
const WIDTH = 640;
const HEIGHT = 480;
const FPS = 10;
const RATE = 48_000;

/** A 640×480 JPEG whose pattern drifts with `i`: motion, but never a scene cut. */
function testFrame(i: number): Promise<Buffer> {
  const raw = Buffer.alloc(WIDTH * HEIGHT * 3);
  for (let p = 0; p < WIDTH * HEIGHT; p++) {
    const x = p % WIDTH;
    const y = Math.floor(p / WIDTH);
    raw[p * 3] = (x + i * 3) & 0xff;
    raw[p * 3 + 1] = (y * 2 + i) & 0xff;
    raw[p * 3 + 2] = (((x >> 3) ^ (y >> 3)) * 8 + i * 2) & 0xff;
  }
  return sharp(raw, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } })
    .jpeg({ quality: 80 })
    .toBuffer();
}

/** Capture times (s) from 0 at an uneven 7–12 fps, as a phone camera delivers them. */
function unevenPts(count: number): number[] {
  const pts: number[] = [];
  let t = 0;
  for (let i = 0; i < count; i++) {
    pts.push(t);
    t += 1 / (7 + ((i * 5) % 6));
  }
  return pts;
}

/** `seconds` of a 440 Hz sine as mono s16le PCM. */
function pcmSine(seconds: number): Buffer {
  const samples = Math.round(seconds * RATE);
  const pcm = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) {
    pcm.writeInt16LE(Math.round(Math.sin((2 * Math.PI * 440 * i) / RATE) * 8000), i * 2);
  }
  return pcm;
}

interface SessionPlan {
  frames: Buffer[];
  pts: number[];
  /** The last frame's duration: no next frame tells it. */
  lastDurationS: number;
  /** 100 ms PCM chunks, sent between frames in capture order, starting at 0. */
  pcm?: Buffer;
  /** Runs after every sample but the last frame is in the writer, before finalize. */
  beforeFinalize?: () => void;
  /** Abandon the recording with cancel() instead of finalizing it. */
  cancel?: boolean;
}

/**
 * Records like the session recorder: access units come back in input order and take the
 * capture times in that order; a frame lasts until the next one's capture time.
 */
async function record(path: string, plan: SessionPlan) {
  const writer = await LiveMp4Writer.create(path, {
    video: { width: WIDTH, height: HEIGHT },
    audio: plan.pcm ? { sampleRate: RATE, channels: 1 } : undefined,
  });
  let writes = Promise.resolve();
  const queued = [...plan.pts];
  let pending: { au: Buffer; ts: number } | null = null;
  const video = new VideoEncoderProcess(FFMPEG);
  video.start({
    width: WIDTH,
    height: HEIGHT,
    fps: FPS,
    preset: 'veryfast',
    crf: 23,
    onAccessUnit: (au) => {
      const ts = queued.shift() as number;
      const previous = pending;
      pending = { au, ts };
      if (previous) {
        writes = writes.then(() =>
          writer.addVideo(previous.au, isKeyframe(previous.au), previous.ts, ts - previous.ts),
        );
      }
    },
  });
  let audio: AudioEncoderProcess | null = null;
  if (plan.pcm) {
    let samples = 0;
    audio = new AudioEncoderProcess(FFMPEG);
    audio.start({
      sampleRate: RATE,
      channels: 1,
      onFrame: (frame, info) => {
        const ts = samples / info.sampleRate;
        samples += info.samples;
        writes = writes.then(() => writer.addAudio(frame, ts, info.samples / info.sampleRate));
      },
    });
  }
  const chunk = (RATE / 10) * 2;
  let sentPcm = 0;
  for (const [i, frame] of plan.frames.entries()) {
    while (audio && plan.pcm && sentPcm < plan.pcm.length && sentPcm / 2 / RATE <= plan.pts[i]) {
      if (!audio.write(plan.pcm.subarray(sentPcm, sentPcm + chunk))) {
        await audio.drained();
      }
      sentPcm += chunk;
    }
    if (!video.write(frame)) {
      await video.drained();
    }
  }
  while (audio && plan.pcm && sentPcm < plan.pcm.length) {
    audio.write(plan.pcm.subarray(sentPcm, sentPcm + chunk));
    sentPcm += chunk;
  }
  await Promise.all([video.end(), audio?.end()]);
  await writes;
  plan.beforeFinalize?.();
  if (plan.cancel) {
    await writer.cancel();
    return null;
  }
  const last = pending as { au: Buffer; ts: number } | null;
  if (last) {
    await writer.addVideo(last.au, isKeyframe(last.au), last.ts, plan.lastDurationS);
  }
  return writer.finalize();
}

describe('media pipeline: JPEG → H.264 (+ PCM → AAC) → fragmented MP4', () => {
  let dir: string;
  let frames: Buffer[];

  beforeAll(async () => {
    dir = testDir('media');
    frames = await Promise.all(Array.from({ length: 60 }, (_, i) => testFrame(i)));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every frame at its capture time: 60 frames at 7–12 fps decode to the capture span', async () => {
    const path = join(dir, 'video.mp4');
    const pts = unevenPts(60);
    const result = (await record(path, { frames, pts, lastDurationS: 1 / FPS }))!;
    const probe = await probeRecording(path, FFPROBE);
    expect(probe).toMatchObject({
      videoFrames: 60,
      width: WIDTH,
      height: HEIGHT,
      videoCodec: 'h264',
      pixFmt: 'yuvj420p',
      videoStartMs: 0,
      audioCodec: null,
    });
    const spanMs = ((pts.at(-1) as number) + 1 / FPS) * 1000;
    expect(Math.abs(probe.durationMs - spanMs)).toBeLessThanOrEqual(1000 / 7);
    const file = readFileSync(path);
    expect(result.bytes).toBe(file.length);
    expect(result.sha256).toBe(createHash('sha256').update(file).digest('hex'));
  });

  it('scales smaller JPEGs of the recording aspect, of changing sizes, to the recording size', async () => {
    const path = join(dir, 'mixed.mp4');
    // Frames 0, 3, 6… at 640×480, 1, 4, 7… at 320×240, 2, 5, 8… at 160×120.
    const sizes = [WIDTH, WIDTH / 2, WIDTH / 4];
    const mixed = await Promise.all(
      frames.slice(0, 30).map(async (f, i) => {
        const w = sizes[i % 3];
        return w === WIDTH
          ? f
          : sharp(f)
              .resize(w, (w * HEIGHT) / WIDTH)
              .jpeg()
              .toBuffer();
      }),
    );
    await record(path, { frames: mixed, pts: unevenPts(30), lastDurationS: 0.1 });
    const probe = await probeRecording(path, FFPROBE);
    expect(probe).toMatchObject({ videoFrames: 30, width: WIDTH, height: HEIGHT });
    // Each recorded frame is its own picture, scaled up whole: it is closer to its own 640×480
    // original, by at least half, than to the original ten frames before (30 pixels of drift).
    const picture = async (n: number): Promise<Buffer> => {
      const { stdout } = await run(
        FFMPEG,
        ['-v', 'error', '-i', path, '-vf', `select=eq(n\\,${n})`, '-frames:v', '1'].concat([
          '-f',
          'rawvideo',
          '-pix_fmt',
          'rgb24',
          'pipe:1',
        ]),
        { encoding: 'buffer', maxBuffer: 4 * WIDTH * HEIGHT },
      );
      return stdout;
    };
    const original = (i: number) => sharp(frames[i]).raw().toBuffer();
    const meanDiff = (a: Buffer, b: Buffer) => {
      let sum = 0;
      for (let k = 0; k < a.length; k++) {
        sum += Math.abs(a[k] - b[k]);
      }
      return sum / a.length;
    };
    for (const n of [27, 28, 29]) {
      const got = await picture(n);
      expect(got.length).toBe(WIDTH * HEIGHT * 3);
      const own = meanDiff(got, await original(n));
      const other = meanDiff(got, await original(n - 10));
      expect(own).toBeLessThan(other / 2);
    }
  });

  it('muxes 3 s of PCM as an AAC track 2 that starts with the video and lasts 3 s', async () => {
    const path = join(dir, 'audio.mp4');
    const pts = unevenPts(30);
    await record(path, { frames: frames.slice(0, 30), pts, lastDurationS: 0.1, pcm: pcmSine(3) });
    const probe = await probeRecording(path, FFPROBE);
    expect(probe).toMatchObject({ videoFrames: 30, videoCodec: 'h264', audioCodec: 'aac' });
    const audioStartMs = probe.audioStartMs as number;
    // One extra AAC frame of encoder priming: 1024 samples, 21 ms at 48 kHz.
    expect(Math.abs((probe.audioDurationMs as number) - audioStartMs - 3_000)).toBeLessThan(50);
    expect(Math.abs(audioStartMs - probe.videoStartMs)).toBeLessThan(100);
    const input = new Input({ source: new FilePathSource(path), formats: ALL_FORMATS });
    try {
      const tracks = await input.getTracks();
      expect(tracks.map((track) => [track.id, track.type])).toEqual([
        [1, 'video'],
        [2, 'audio'],
      ]);
    } finally {
      input.dispose();
    }
  });

  it('leaves a readable file of every complete fragment when the process dies before finalize', async () => {
    const path = join(dir, 'crash.mp4');
    const copy = join(dir, 'crash-copy.mp4');
    await record(path, {
      frames,
      pts: unevenPts(60),
      lastDurationS: 0.1,
      beforeFinalize: () => copyFileSync(path, copy),
    });
    const probe = await probeRecording(copy, FFPROBE);
    // Keyframes every 10 frames (1 s at 10 fps) cut the fragments: frames 0–49 are in five
    // complete fragments, 50–58 still wait in the muxer for the next keyframe or finalize.
    expect(probe).toMatchObject({ videoFrames: 50, videoCodec: 'h264', videoStartMs: 0 });
    expect((await probeRecording(path, FFPROBE)).videoFrames).toBe(60);
  });

  it('keeps the complete fragments of a recording given up with cancel()', async () => {
    const path = join(dir, 'cancel.mp4');
    await record(path, { frames, pts: unevenPts(60), lastDurationS: 0.1, cancel: true });
    expect((await probeRecording(path, FFPROBE)).videoFrames).toBe(50);
  });

  it('rejects end() with ffmpeg’s message when the first frame is not a JPEG', async () => {
    const encoder = new VideoEncoderProcess(FFMPEG);
    const aus: Buffer[] = [];
    encoder.start({
      width: WIDTH,
      height: HEIGHT,
      fps: FPS,
      preset: 'veryfast',
      crf: 23,
      onAccessUnit: (au) => aus.push(au),
    });
    // A JPEG start marker and then junk: ffmpeg cannot decode it, and must not skip it.
    encoder.write(
      Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(4_000, 0x55)]),
    );
    for (const frame of frames.slice(0, 5)) {
      encoder.write(frame);
    }
    await expect(encoder.end()).rejects.toThrow(
      /^video encoder failed: ffmpeg exited with code \d+ \(ffmpeg: .+\)$/,
    );
    expect(aus).toHaveLength(0);
  });

  it('rejects end() and drained() at once after kill()', async () => {
    const encoder = new VideoEncoderProcess(FFMPEG);
    encoder.start({
      width: WIDTH,
      height: HEIGHT,
      fps: FPS,
      preset: 'veryfast',
      crf: 23,
      onAccessUnit: () => undefined,
    });
    while (encoder.write(frames[0])) {
      // Fill the input buffer so that drained() has to wait.
    }
    const drained = encoder.drained();
    encoder.kill();
    await expect(drained).rejects.toThrow('video encoder was killed');
    await expect(encoder.end()).rejects.toThrow('video encoder was killed');
  });

  it('rejects end() when ffmpeg cannot be started at all', async () => {
    const encoder = new AudioEncoderProcess(join(dir, 'no-such-ffmpeg'));
    encoder.start({ sampleRate: RATE, channels: 1, onFrame: () => undefined });
    encoder.write(pcmSine(0.1));
    await expect(encoder.end()).rejects.toThrow(/^audio encoder failed: .*ENOENT/);
  });
});

/** An ADTS frame (AAC-LC, no CRC) around `payload`. */
function adtsFrame(payload: Buffer, rateIndex: number, channels: number): Buffer {
  const length = payload.length + 7;
  const header = Buffer.from([
    0xff,
    0xf1,
    (1 << 6) | (rateIndex << 2) | (channels >> 2),
    ((channels & 0x03) << 6) | (length >> 11),
    (length >> 3) & 0xff,
    ((length & 0x07) << 5) | 0x1f,
    0xfc,
  ]);
  return Buffer.concat([header, payload]);
}

describe('AdtsSplitter', () => {
  const payloads = [Buffer.alloc(5, 1), Buffer.alloc(300, 2), Buffer.alloc(17, 3)];
  const stream = Buffer.concat(payloads.map((payload) => adtsFrame(payload, 3, 2)));

  it('gives the same raw frames and stream info for any chunking', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length - 1 })), (cuts) => {
        const frames: Array<[Buffer, AdtsFrameInfo]> = [];
        const splitter = new AdtsSplitter((frame, info) => frames.push([Buffer.from(frame), info]));
        let from = 0;
        for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
          splitter.push(stream.subarray(from, cut));
          from = cut;
        }
        splitter.push(stream.subarray(from));
        expect(splitter.pendingBytes).toBe(0);
        expect(frames.map(([frame]) => frame.toString('hex'))).toEqual(
          payloads.map((payload) => payload.toString('hex')),
        );
        expect(frames[0][1]).toEqual({ sampleRate: 48_000, channels: 2, samples: 1024 });
      }),
    );
  });

  it('throws when the stream loses its sync word', () => {
    const splitter = new AdtsSplitter(() => undefined);
    expect(() => splitter.push(Buffer.concat([stream, Buffer.alloc(8)]))).toThrow(
      'ADTS sync word missing',
    );
  });

  it('builds the 2-byte AudioSpecificConfig of AAC-LC', () => {
    expect(Buffer.from(audioSpecificConfig(2, 3, 1)).toString('hex')).toBe('1188');
    expect(Buffer.from(audioSpecificConfig(2, 4, 2)).toString('hex')).toBe('1210');
  });
});
