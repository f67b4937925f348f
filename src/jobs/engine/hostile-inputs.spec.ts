import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';
import { jobDir, makeImage, makeVideo, TOOLS } from '../../../test/support/job-media';
import { type EngineContext, inspectInputs, runJob } from './engine';
import { BadInputError } from './errors';
import { inputArgs } from './inspect';
import { engineJobSchema } from './job-spec';
import { runTool, ToolFailure } from './tool-process';

function context(dir: string): EngineContext {
  return {
    dir,
    signal: new AbortController().signal,
    onProgress: () => undefined,
    tools: TOOLS,
    cpuClass: 'low',
  };
}

/**
 * A FIFO outside the job's folder, held open for writing by a pending open(): that open
 * completes only when some process opens the FIFO for reading. So if `opened` is still false after
 * a job, nothing (ffprobe, ffmpeg, sharp) opened the file a hostile input pointed at.
 */
class Tripwire {
  readonly dir = mkdtempSync(join(tmpdir(), 'framegate-tripwire-'));
  // A segment extension HLS demuxers accept, so that the control below really reads it.
  readonly path = join(this.dir, 'secret.ts');
  opened = false;
  private readonly writer: ReturnType<typeof open>;

  constructor() {
    execFileSync('mkfifo', [this.path]);
    this.writer = open(this.path, 'w');
    this.writer.then(
      () => {
        this.opened = true;
      },
      () => undefined,
    );
  }

  /** Opens the reading end ourselves (non-blocking), which releases the pending writer. */
  async release(): Promise<void> {
    const reader = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = await this.writer;
    await writer.close();
    closeSync(reader);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`${what}: not seen`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A PNG whose header declares width×height, with a few bytes of image data. */
function pngDeclaring(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(4096))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('media job engine: hostile inputs are refused before anything reads outside the job', () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup();
    }
  });
  function folder(prefix: string): string {
    const d = jobDir(prefix);
    cleanups.push(() => d.remove());
    return d.dir;
  }
  function tripwire(): Tripwire {
    const t = new Tripwire();
    cleanups.push(() => t.release());
    return t;
  }

  it('refuses an HLS playlist pointing at a file outside the folder (also disguised as .mp4), and nothing opens that file', async () => {
    const dir = folder('hls');
    const secret = tripwire();
    const playlist = [
      '#EXTM3U',
      '#EXT-X-VERSION:3',
      '#EXT-X-TARGETDURATION:10',
      '#EXTINF:10.0,',
      secret.path,
      `file:${secret.path}`,
      '#EXT-X-ENDLIST',
      '',
    ].join('\n');
    writeFileSync(join(dir, 'in/list.m3u8'), playlist);
    writeFileSync(join(dir, 'in/video.mp4'), playlist);
    await makeVideo(dir, 'in/ok.mp4', { seconds: 1, audioSeconds: 0 });
    for (const spec of [
      { type: 'transcode', input: { file: 'in/list.m3u8' } },
      { type: 'extract-audio', input: { file: 'in/video.mp4' }, format: 'wav' },
      { type: 'concat', inputs: [{ file: 'in/ok.mp4' }, { file: 'in/video.mp4' }] },
      { type: 'images-to-video', images: { files: ['in/list.m3u8'] }, fps: 1 },
    ]) {
      const run = runJob(engineJobSchema.parse(spec), context(dir));
      await expect(run).rejects.toThrow(BadInputError);
      await expect(run).rejects.toThrow(/is not an accepted media file|is not a JPEG, PNG or WebP/);
    }
    expect(secret.opened).toBe(false);

    // Control: the same playlist handed to a bare ffprobe is followed to the file, and the
    // tripwire sees it; so the check above can fail.
    const bare = spawn(TOOLS.ffprobe, ['-v', 'error', './in/list.m3u8'], {
      cwd: dir,
      stdio: 'ignore',
    });
    cleanups.push(() => bare.kill('SIGKILL'));
    await waitFor(() => secret.opened, 'bare ffprobe opening the file the playlist names');
  });

  it('refuses an ffconcat list naming /etc/passwd and a file outside the folder, and nothing opens that file', async () => {
    const dir = folder('ffconcat');
    const secret = tripwire();
    const list = `ffconcat version 1.0\nfile '${secret.path}'\nfile /etc/passwd\n`;
    writeFileSync(join(dir, 'in/list.ffconcat'), list);
    writeFileSync(join(dir, 'in/list.mkv'), list);
    for (const file of ['in/list.ffconcat', 'in/list.mkv']) {
      await expect(
        inspectInputs(
          engineJobSchema.parse({ type: 'thumbnails', input: { file }, everySeconds: 1 }),
          context(dir),
        ),
      ).rejects.toThrow(/is not an accepted media file/);
    }
    expect(secret.opened).toBe(false);
  });

  it('past the sniffing too, ffprobe with the engine input arguments (forced demuxer, file and pipe protocols) does not follow a playlist', async () => {
    const dir = folder('forced');
    const secret = tripwire();
    writeFileSync(
      join(dir, 'in/list.mp4'),
      `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n${secret.path}\n#EXT-X-ENDLIST\n`,
    );
    for (const demuxer of ['mov', 'matroska', 'mp3'] as const) {
      await expect(
        runTool({
          command: TOOLS.ffprobe,
          args: ['-v', 'error', ...inputArgs('in/list.mp4', demuxer)],
          cwd: dir,
          signal: new AbortController().signal,
          cpuClass: 'normal',
          label: 'ffprobe',
        }),
      ).rejects.toThrow(ToolFailure);
    }
    expect(secret.opened).toBe(false);
  });

  it('refuses a PNG declaring 50000×50000 pixels from its header, as an input and among images', async () => {
    const dir = folder('bomb');
    writeFileSync(join(dir, 'in/bomb.png'), pngDeclaring(50_000, 50_000));
    await makeImage(dir, 'in/fine.jpg', 64, 48);
    await expect(
      runJob(
        engineJobSchema.parse({ type: 'upscale', input: { file: 'in/bomb.png' }, scale: 2 }),
        context(dir),
      ),
    ).rejects.toThrow(/declares 50000×50000 pixels, more than the 33177600 allowed/);
    await expect(
      runJob(
        engineJobSchema.parse({
          type: 'images-to-video',
          images: { files: ['in/fine.jpg', 'in/bomb.png'] },
          fps: 2,
        }),
        context(dir),
      ),
    ).rejects.toThrow(/"in\/bomb.png" declares 50000×50000 pixels/);
  });

  it('refuses a truncated MP4, whether its index came last or first (faststart)', async () => {
    const dir = folder('truncated');
    await makeVideo(dir, 'in/plain.mp4', { seconds: 2 });
    await makeVideo(dir, 'in/fast.mp4', { seconds: 2, extra: ['-movflags', '+faststart'] });
    for (const file of ['in/plain.mp4', 'in/fast.mp4']) {
      truncateSync(join(dir, file), Math.floor(statSync(join(dir, file)).size * 0.6));
      const run = runJob(
        engineJobSchema.parse({ type: 'transcode', input: { file } }),
        context(dir),
      );
      await expect(run).rejects.toThrow(BadInputError);
      await expect(run).rejects.toThrow(/is cut short/);
    }
  });

  it('refuses a symlink leading out of the folder, a missing file and a text file posing as a JPEG', async () => {
    const dir = folder('paths');
    const outside = folder('outside');
    writeFileSync(join(outside, 'other.mp4'), readFileSync(__filename));
    symlinkSync(join(outside, 'other.mp4'), join(dir, 'in/link.mp4'));
    writeFileSync(join(dir, 'in/fake.jpg'), 'not an image at all');
    const inspect = (spec: unknown): Promise<void> =>
      inspectInputs(engineJobSchema.parse(spec), context(dir));
    await expect(inspect({ type: 'transcode', input: { file: 'in/link.mp4' } })).rejects.toThrow(
      /"in\/link.mp4" points outside the job's folder/,
    );
    await expect(inspect({ type: 'transcode', input: { file: 'in/nope.mp4' } })).rejects.toThrow(
      /"in\/nope.mp4" does not exist/,
    );
    await expect(
      inspect({ type: 'images-to-video', images: { files: ['in/fake.jpg'] }, fps: 1 }),
    ).rejects.toThrow(/"in\/fake.jpg" is not a JPEG, PNG or WebP image/);
  });

  it('refuses names with "..", absolute paths, patterns and protocols before anything runs', () => {
    for (const file of [
      '../etc/passwd',
      'in/../../x.mp4',
      '/etc/passwd',
      'in/frame-%04d.jpg',
      'file:in/x.mp4',
      'concat:in/a.mp4|in/b.mp4',
      '-i',
      '.hidden',
      'out/video.mp4',
    ]) {
      expect(engineJobSchema.safeParse({ type: 'transcode', input: { file } }).success).toBe(false);
    }
  });
});
