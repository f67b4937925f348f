import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { jobDir, probeFile, streamOf, TOOLS } from '../../../test/support/job-media';
import { jpegFrames, pcmSine } from '../../../test/support/media';
import { encodeMediaMessage, Track } from '../../protocol/media-header';
import { SpoolWriter } from '../../spool/spool';
import { runJob } from './engine';
import { BadInputError } from './errors';
import { engineJobSchema } from './job-spec';
import { framesFromSpool } from './spool-frames';

describe('framesFromSpool', () => {
  const dirs: Array<{ remove(): void }> = [];
  afterAll(() => dirs.forEach((d) => d.remove()));

  async function spoolOf(dir: string, messages: Buffer[]): Promise<string> {
    const path = join(dir, 'session.spool');
    const writer = await SpoolWriter.open(path);
    for (const m of messages) {
      writer.append(m);
    }
    await writer.close();
    return path;
  }

  it('writes the stored video frames as files with display times from their pts, and they make a video of that length', async () => {
    const d = jobDir('spool-frames');
    dirs.push(d);
    const jpegs = await jpegFrames(320, 240, 5);
    const audio = pcmSine(0.1, 16_000);
    const spool = await spoolOf(d.dir, [
      encodeMediaMessage(Track.Video, 1, 0, jpegs[0]),
      encodeMediaMessage(Track.Audio, 2, 0, audio),
      encodeMediaMessage(Track.Video, 3, 100, jpegs[1]),
      encodeMediaMessage(Track.Video, 4, 200, jpegs[2]),
      // Same pts as the one before: it cannot be shown for a positive time.
      encodeMediaMessage(Track.Video, 5, 200, jpegs[3]),
      encodeMediaMessage(Track.Audio, 6, 100, audio),
      encodeMediaMessage(Track.Video, 7, 350, jpegs[4]),
    ]);
    const frames = await framesFromSpool(spool, join(d.dir, 'in/frames'), {
      maxBytes: 10_000_000,
      lastDurationMs: 100,
    });
    expect(frames).toEqual({
      files: ['frame-000001.jpg', 'frame-000002.jpg', 'frame-000003.jpg', 'frame-000004.jpg'],
      durationsMs: [100, 100, 150, 100],
      skipped: 1,
    });
    const kept = [jpegs[0], jpegs[1], jpegs[2], jpegs[4]];
    frames.files.forEach((name, i) => {
      expect(readFileSync(join(d.dir, 'in/frames', name)).equals(kept[i])).toBe(true);
    });

    await runJob(
      engineJobSchema.parse({
        type: 'images-to-video',
        images: {
          files: frames.files.map((f) => `in/frames/${f}`),
          durationsMs: frames.durationsMs,
        },
      }),
      {
        dir: d.dir,
        signal: new AbortController().signal,
        onProgress: () => undefined,
        tools: TOOLS,
        cpuClass: 'low',
      },
    );
    const v = streamOf(await probeFile(join(d.dir, 'out/video.mp4')), 'video');
    // 450 ms at the default 30 fps: frames start at 0, 3, 6, 11 (10.5 rounds up), end at 14 (13.5).
    expect(Number(v?.nb_read_frames)).toBe(14);
    expect(Number(v?.duration)).toBeCloseTo(14 / 30, 2);
    expect(v).toMatchObject({ width: 320, height: 240 });
  });

  it('refuses a session with more frames or bytes than allowed, or with no video', async () => {
    const d = jobDir('spool-limits');
    dirs.push(d);
    const jpegs = await jpegFrames(64, 48, 3);
    const spool = await spoolOf(
      d.dir,
      jpegs.map((j, i) => encodeMediaMessage(Track.Video, i + 1, i * 100, j)),
    );
    const dest = join(d.dir, 'in/frames');
    await expect(
      framesFromSpool(spool, dest, { maxFrames: 2, maxBytes: 1e9, lastDurationMs: 100 }),
    ).rejects.toThrow(/more than 2 video frames/);
    await expect(
      framesFromSpool(spool, dest, { maxBytes: jpegs[0].length, lastDurationMs: 100 }),
    ).rejects.toThrow(BadInputError);
    const audioOnly = await spoolOf(join(d.dir, 'in'), [
      encodeMediaMessage(Track.Audio, 1, 0, pcmSine(0.1, 16_000)),
    ]);
    await expect(
      framesFromSpool(audioOnly, dest, { maxBytes: 1e9, lastDurationMs: 100 }),
    ).rejects.toThrow(/no video frames/);
  });
});
