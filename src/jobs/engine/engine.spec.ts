import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import {
  jobDir,
  makeImage,
  makeVideo,
  probeFile,
  streamOf,
  TOOLS,
} from '../../../test/support/job-media';
import { jpegFrames } from '../../../test/support/media';
import { type EngineContext, type JobOutput, runJob } from './engine';
import { BadInputError } from './errors';
import { ffmpegEncoders } from './ffmpeg-run';
import { engineJobSchema, type EngineJob } from './job-spec';

/**
 * Every job type on real inputs made here with ffmpeg (lavfi testsrc, sine) and sharp; outputs
 * read back with ffprobe counting frames. The jobs' processes run in the `low` CPU class: the
 * default, `background` (SCHED_IDLE), may get no CPU at all while other suites keep both cores
 * busy, and cancel.spec.ts checks that default.
 */
function context(dir: string, progress: number[] = []): EngineContext {
  return {
    dir,
    signal: new AbortController().signal,
    onProgress: (p) => progress.push(p),
    tools: TOOLS,
    cpuClass: 'low',
  };
}

/** The spec as the engine gets it: parsed by its schema (defaults applied). */
function job(spec: unknown): EngineJob {
  return engineJobSchema.parse(spec);
}

function primary(outputs: JobOutput[]): JobOutput {
  const found = outputs.filter((o) => o.primary);
  expect(found).toHaveLength(1);
  return found[0];
}

function expectDescribed(dir: string, output: JobOutput): void {
  const bytes = readFileSync(join(dir, 'out', output.name));
  expect(output.bytes).toBe(bytes.length);
  expect(output.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
}

function num(value: string | undefined): number {
  return Number(value);
}

describe('media job engine: job types on real media', () => {
  const dirs: Array<{ remove(): void }> = [];
  afterAll(() => dirs.forEach((d) => d.remove()));
  function folder(prefix: string): string {
    const d = jobDir(prefix);
    dirs.push(d);
    return d.dir;
  }

  describe('images-to-video', () => {
    it('makes one frame per image at fps, converts a PNG among JPEGs, fits other sizes, muxes sound cut to the pictures', async () => {
      const dir = folder('i2v-fps');
      const jpegs = await jpegFrames(320, 240, 12);
      const files = jpegs.map((jpeg, i) => {
        const name = `in/img-${i}.jpg`;
        writeFileSync(join(dir, name), jpeg);
        return name;
      });
      files.splice(5, 0, await makeImage(dir, 'in/wide.png', 640, 360));
      await makeVideo(dir, 'in/sound.mp4', { seconds: 10, width: 160, height: 120 });
      const progress: number[] = [];
      const outputs = await runJob(
        job({
          type: 'images-to-video',
          images: { files },
          fps: 4,
          audio: { file: 'in/sound.mp4' },
        }),
        context(dir, progress),
      );
      const video = primary(outputs);
      expect(video).toMatchObject({ name: 'video.mp4', contentType: 'video/mp4' });
      expectDescribed(dir, video);
      const probe = await probeFile(join(dir, 'out/video.mp4'));
      const v = streamOf(probe, 'video');
      expect(v).toMatchObject({ codec_name: 'h264', pix_fmt: 'yuv420p', width: 320, height: 240 });
      expect(num(v?.nb_read_frames)).toBe(13);
      expect(num(v?.duration)).toBeCloseTo(13 / 4, 2);
      const a = streamOf(probe, 'audio');
      expect(a?.codec_name).toBe('aac');
      // Cut to the pictures (an AAC frame of slack at most).
      expect(num(a?.duration)).toBeLessThanOrEqual(13 / 4 + 0.05);
      expect(num(a?.duration)).toBeGreaterThan(13 / 4 - 0.1);
      expect(progress[progress.length - 1]).toBe(100);
      // The engine's scratch folder is gone; out/ holds the outputs only.
      expect(outputs.map((o) => o.name)).toEqual(['video.mp4']);
    });

    it('shows each image for its duration on the output frame grid, sized from the first image made even', async () => {
      const dir = folder('i2v-durations');
      const durationsMs = [500, 250, 1000, 100, 150];
      const files: string[] = [];
      for (const [i] of durationsMs.entries()) {
        const name = `in/frame-${i}.jpg`;
        await sharp({
          create: {
            width: 321,
            height: 241,
            channels: 3,
            background: { r: i * 50, g: 80, b: 120 },
          },
        })
          .jpeg()
          .toFile(join(dir, name));
        files.push(name);
      }
      const outputs = await runJob(
        job({ type: 'images-to-video', images: { files, durationsMs }, fps: 10 }),
        context(dir),
      );
      const probe = await probeFile(join(dir, 'out/video.mp4'));
      const v = streamOf(probe, 'video');
      // Frame starts 0, 5, 8 (7.5 rounds up), 18, 19 (18.5 rounds up), end 20: 2.0 s.
      expect(num(v?.nb_read_frames)).toBe(20);
      expect(num(v?.duration)).toBeCloseTo(2, 2);
      expect(v).toMatchObject({ width: 320, height: 240 });
      expect(streamOf(probe, 'audio')).toBeUndefined();
      expect(primary(outputs).probe).toMatchObject({ format: expect.stringContaining('mp4') });
    });

    it('refuses images without fps or durations', async () => {
      const dir = folder('i2v-nofps');
      await makeImage(dir, 'in/a.jpg', 64, 48);
      await expect(
        runJob(job({ type: 'images-to-video', images: { files: ['in/a.jpg'] } }), context(dir)),
      ).rejects.toThrow(BadInputError);
    });
  });

  describe('extract-audio', () => {
    it.each([
      ['wav', 'pcm_s16le', 'audio/wav'],
      ['aac', 'aac', 'audio/aac'],
      ['mp3', 'mp3', 'audio/mpeg'],
    ] as const)('writes the sound as %s', async (format, codec, contentType) => {
      const dir = folder(`audio-${format}`);
      await makeVideo(dir, 'in/clip.mp4', { seconds: 3, audioSeconds: 2.5 });
      const outputs = await runJob(
        job({ type: 'extract-audio', input: { file: 'in/clip.mp4' }, format }),
        context(dir),
      );
      const out = primary(outputs);
      expect(out).toMatchObject({ name: `audio.${format}`, contentType });
      expectDescribed(dir, out);
      const probe = await probeFile(join(dir, 'out', out.name));
      expect(probe.streams).toHaveLength(1);
      expect(streamOf(probe, 'audio')?.codec_name).toBe(codec);
      expect(num(probe.format.duration)).toBeGreaterThan(2.4);
      expect(num(probe.format.duration)).toBeLessThan(2.65);
    });

    it('refuses a video without sound as bad input', async () => {
      const dir = folder('audio-none');
      await makeVideo(dir, 'in/silent.mp4', { seconds: 1, audioSeconds: 0 });
      await expect(
        runJob(
          job({ type: 'extract-audio', input: { file: 'in/silent.mp4' }, format: 'wav' }),
          context(dir),
        ),
      ).rejects.toThrow(/has no audio stream/);
    });
  });

  describe('transcode', () => {
    it('re-encodes a WebM to H.264 at a width (height from the aspect), keeping the sound as AAC', async () => {
      const dir = folder('transcode-h264');
      await makeVideo(dir, 'in/clip.webm', {
        seconds: 2,
        width: 320,
        height: 180,
        fps: 25,
        videoCodec: 'libvpx',
        audioCodec: 'libvorbis',
      });
      await runJob(
        job({ type: 'transcode', input: { file: 'in/clip.webm' }, width: 640, crf: 30 }),
        context(dir),
      );
      const probe = await probeFile(join(dir, 'out/video.mp4'));
      expect(streamOf(probe, 'video')).toMatchObject({
        codec_name: 'h264',
        width: 640,
        height: 360,
      });
      expect(num(streamOf(probe, 'video')?.nb_read_frames)).toBe(50);
      expect(streamOf(probe, 'audio')?.codec_name).toBe('aac');
    });

    it('encodes H.265 at a bit rate where the build has libx265, and refuses it clearly where not', async () => {
      const dir = folder('transcode-h265');
      await makeVideo(dir, 'in/clip.mp4', { seconds: 1, audioSeconds: 0 });
      const spec = job({
        type: 'transcode',
        input: { file: 'in/clip.mp4' },
        codec: 'h265',
        bitrateKbps: 300,
      });
      if (!(await ffmpegEncoders(TOOLS.ffmpeg)).has('libx265')) {
        await expect(runJob(spec, context(dir))).rejects.toThrow(/no libx265 encoder/);
        return;
      }
      await runJob(spec, context(dir));
      const probe = await probeFile(join(dir, 'out/video.mp4'));
      expect(streamOf(probe, 'video')).toMatchObject({
        codec_name: 'hevc',
        width: 320,
        height: 240,
      });
      expect(num(streamOf(probe, 'video')?.nb_read_frames)).toBe(25);
      expect(streamOf(probe, 'audio')).toBeUndefined();
    });
  });

  describe('upscale', () => {
    it('enlarges a PNG by a factor, as a PNG', async () => {
      const dir = folder('upscale-image');
      await makeImage(dir, 'in/small.png', 160, 120);
      const outputs = await runJob(
        job({ type: 'upscale', input: { file: 'in/small.png' }, scale: 2 }),
        context(dir),
      );
      expect(primary(outputs)).toMatchObject({ name: 'image.png', contentType: 'image/png' });
      const meta = await sharp(join(dir, 'out/image.png')).metadata();
      expect(meta).toMatchObject({ format: 'png', width: 320, height: 240 });
    });

    it('enlarges a video to a width with every frame and its sound', async () => {
      const dir = folder('upscale-video');
      await makeVideo(dir, 'in/small.mp4', { seconds: 2, width: 160, height: 120, fps: 10 });
      await runJob(
        job({ type: 'upscale', input: { file: 'in/small.mp4' }, width: 480 }),
        context(dir),
      );
      const probe = await probeFile(join(dir, 'out/video.mp4'));
      expect(streamOf(probe, 'video')).toMatchObject({
        codec_name: 'h264',
        width: 480,
        height: 360,
      });
      expect(num(streamOf(probe, 'video')?.nb_read_frames)).toBe(20);
      expect(streamOf(probe, 'audio')?.codec_name).toBe('aac');
    });

    it('turns a JPEG upright by its EXIF orientation before enlarging it', async () => {
      const dir = folder('upscale-exif');
      // Stored 160×120, to be shown turned a quarter clockwise (orientation 6): upright 120×160.
      await sharp({ create: { width: 160, height: 120, channels: 3, background: '#336699' } })
        .jpeg()
        .withMetadata({ orientation: 6 })
        .toFile(join(dir, 'in/phone.jpg'));
      const outputs = await runJob(
        job({ type: 'upscale', input: { file: 'in/phone.jpg' }, scale: 2 }),
        context(dir),
      );
      expect(primary(outputs)).toMatchObject({ name: 'image.jpg', contentType: 'image/jpeg' });
      const meta = await sharp(join(dir, 'out/image.jpg')).metadata();
      expect(meta).toMatchObject({ format: 'jpeg', width: 240, height: 320 });
    });

    it('refuses to shrink', async () => {
      const dir = folder('upscale-shrink');
      await makeImage(dir, 'in/big.jpg', 640, 480);
      await expect(
        runJob(job({ type: 'upscale', input: { file: 'in/big.jpg' }, width: 320 }), context(dir)),
      ).rejects.toThrow(/only enlarges/);
    });
  });

  describe('thumbnails', () => {
    it('writes a JPEG every few seconds at the asked width', async () => {
      const dir = folder('thumbs-every');
      await makeVideo(dir, 'in/clip.mp4', { seconds: 10, width: 640, height: 360, fps: 10 });
      const outputs = await runJob(
        job({ type: 'thumbnails', input: { file: 'in/clip.mp4' }, everySeconds: 2, width: 160 }),
        context(dir),
      );
      expect(outputs.map((o) => o.name)).toEqual([
        'thumb-0001.jpg',
        'thumb-0002.jpg',
        'thumb-0003.jpg',
        'thumb-0004.jpg',
        'thumb-0005.jpg',
      ]);
      expect(primary(outputs).name).toBe('thumb-0001.jpg');
      for (const o of outputs) {
        expect(o.contentType).toBe('image/jpeg');
        expect(streamOf(await probeFile(join(dir, 'out', o.name)), 'video')).toMatchObject({
          codec_name: 'mjpeg',
          width: 160,
          height: 90,
        });
      }
    });

    it('writes the frames at given times', async () => {
      const dir = folder('thumbs-at');
      await makeVideo(dir, 'in/clip.mp4', { seconds: 5, fps: 10 });
      const outputs = await runJob(
        job({ type: 'thumbnails', input: { file: 'in/clip.mp4' }, atSeconds: [0, 1.5, 4.9] }),
        context(dir),
      );
      expect(outputs.map((o) => o.name)).toEqual([
        'thumb-0001.jpg',
        'thumb-0002.jpg',
        'thumb-0003.jpg',
      ]);
      await expect(
        runJob(
          job({ type: 'thumbnails', input: { file: 'in/clip.mp4' }, atSeconds: [7] }),
          context(dir),
        ),
      ).rejects.toThrow(/not before the end/);
    });

    it('tiles a sprite sheet with a WebVTT index of xywh fragments', async () => {
      const dir = folder('thumbs-sprite');
      await makeVideo(dir, 'in/clip.mp4', { seconds: 9, width: 320, height: 180, fps: 10 });
      const outputs = await runJob(
        job({
          type: 'thumbnails',
          input: { file: 'in/clip.mp4' },
          everySeconds: 2,
          sprite: { columns: 3, width: 160 },
        }),
        context(dir),
      );
      expect(outputs.map((o) => [o.name, o.contentType, o.primary])).toEqual([
        ['sprite.jpg', 'image/jpeg', true],
        ['index.vtt', 'text/vtt', false],
      ]);
      expect(outputs[1].probe).toBeNull();
      // 5 tiles (0, 2, 4, 6, 8 s) of 160×90, 3 a row: 2 rows.
      expect(streamOf(await probeFile(join(dir, 'out/sprite.jpg')), 'video')).toMatchObject({
        width: 480,
        height: 180,
      });
      const vtt = readFileSync(join(dir, 'out/index.vtt'), 'utf8');
      expect(vtt.split('\n\n').map((cue) => cue.trim())).toEqual([
        'WEBVTT',
        '00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90',
        '00:00:02.000 --> 00:00:04.000\nsprite.jpg#xywh=160,0,160,90',
        '00:00:04.000 --> 00:00:06.000\nsprite.jpg#xywh=320,0,160,90',
        '00:00:06.000 --> 00:00:08.000\nsprite.jpg#xywh=0,90,160,90',
        '00:00:08.000 --> 00:00:09.000\nsprite.jpg#xywh=160,90,160,90',
      ]);
    });
  });

  describe('concat', () => {
    it('joins inputs of other sizes, rates and sound into the first one’s size, with silence where sound is missing', async () => {
      const dir = folder('concat');
      await makeVideo(dir, 'in/a.mp4', { seconds: 2, width: 320, height: 240, fps: 25 });
      await makeVideo(dir, 'in/b.mp4', {
        seconds: 1,
        width: 640,
        height: 360,
        fps: 30,
        audioSeconds: 0,
      });
      await makeVideo(dir, 'in/c.mkv', { seconds: 1.5, width: 240, height: 320, fps: 10 });
      const progress: number[] = [];
      await runJob(
        job({
          type: 'concat',
          inputs: [{ file: 'in/a.mp4' }, { file: 'in/b.mp4' }, { file: 'in/c.mkv' }],
        }),
        context(dir, progress),
      );
      const probe = await probeFile(join(dir, 'out/video.mp4'));
      const v = streamOf(probe, 'video');
      expect(v).toMatchObject({ codec_name: 'h264', width: 320, height: 240, pix_fmt: 'yuv420p' });
      // 4.5 s at the first input's 25 fps; a segment whose sound runs a little longer than its
      // pictures (AAC priming) holds its last picture that long.
      expect(num(v?.nb_read_frames)).toBeGreaterThanOrEqual(112);
      expect(num(v?.nb_read_frames)).toBeLessThanOrEqual(115);
      const a = streamOf(probe, 'audio');
      expect(a?.codec_name).toBe('aac');
      expect(num(a?.duration)).toBeGreaterThan(4.4);
      expect(num(a?.duration)).toBeLessThan(4.65);
      expect(progress[progress.length - 1]).toBe(100);
    });

    it('joins inputs that all lack sound into a video without sound', async () => {
      const dir = folder('concat-silent');
      await makeVideo(dir, 'in/a.mp4', { seconds: 1, audioSeconds: 0, fps: 10 });
      await makeVideo(dir, 'in/b.mp4', { seconds: 1, audioSeconds: 0, fps: 10 });
      await runJob(
        job({ type: 'concat', inputs: [{ file: 'in/a.mp4' }, { file: 'in/b.mp4' }] }),
        context(dir),
      );
      const probe = await probeFile(join(dir, 'out/video.mp4'));
      expect(num(streamOf(probe, 'video')?.nb_read_frames)).toBe(20);
      expect(streamOf(probe, 'audio')).toBeUndefined();
    });
  });
});
