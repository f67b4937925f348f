import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { probeTextTrack } from '../../test/support/webvtt-probe';
import { probe } from '../../test/support/media';
import { locateTool } from './ffmpeg-locator';
import { AccessUnitSplitter, isKeyframe } from './h264-stream';
import { HashedFileSink, LiveMp4Writer } from './mp4-writer';
import { messageCues } from './webvtt';

/** `seconds` of a 10 fps 320×240 test pattern as H.264 access units (Annex B, AUD each). */
async function testPattern(seconds: number): Promise<Buffer[]> {
  const { stdout } = await promisify(execFile)(
    locateTool('ffmpeg', undefined).path,
    [
      '-v',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc=size=320x240:rate=10',
      '-t',
      String(seconds),
      '-c:v',
      'libx264',
      '-preset',
      'veryfast',
      '-bf',
      '0',
      '-g',
      '10',
      '-pix_fmt',
      'yuv420p',
      '-x264-params',
      'aud=1',
      '-f',
      'h264',
      '-',
    ],
    { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 },
  );
  const units: Buffer[] = [];
  const splitter = new AccessUnitSplitter((au) => units.push(au));
  splitter.push(stdout);
  const last = splitter.flush();
  if (last) {
    units.push(last);
  }
  return units;
}

describe('HashedFileSink', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'framegate-mp4-sink-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finishes a chunk a filling file system writes only in part, so the file has no gap and its hash is its bytes', async () => {
    const path = join(dir, 'short.mp4');
    const file = await open(path, 'w');
    // At most 1000 bytes per call, reported without an error, as a nearly full disk may do.
    const write = file.write.bind(file) as (
      b: Uint8Array,
      o: number,
      l: number,
      p: number,
    ) => Promise<{ bytesWritten: number }>;
    Object.assign(file, {
      write: (b: Uint8Array, o: number, l: number, p: number) => write(b, o, Math.min(l, 1000), p),
    });
    const sink = new HashedFileSink(file);
    const chunks = [randomBytes(5000), randomBytes(1), randomBytes(2500)];
    let position = 0;
    for (const data of chunks) {
      await sink.write({ type: 'write', data, position });
      position += data.length;
    }
    await sink.close();

    const written = readFileSync(path);
    expect(written.equals(Buffer.concat(chunks))).toBe(true);
    expect(sink.bytes).toBe(7501);
    expect(sink.digest()).toBe(createHash('sha256').update(written).digest('hex'));
  });
});

describe('LiveMp4Writer text track', () => {
  let dir: string;
  let units: Buffer[];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'framegate-mp4-text-'));
    units = await testPattern(12);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes video fragments while it streams although no cue came yet (the text track never holds them)', async () => {
    const path = join(dir, 'streaming.mp4');
    const writer = await LiveMp4Writer.create(path, { video: { width: 320, height: 240 } });
    for (const [i, au] of units.entries()) {
      await writer.addVideo(au, isKeyframe(au), i / 10, 0.1);
    }
    // With mediabunny's default handling of a subtitle track, only ftyp (28 bytes) is out here.
    const beforeFinalize = statSync(path).size;
    expect(beforeFinalize).toBeGreaterThan(10_000);
    await writer.addCues([]);
    await writer.finalize();
    const probed = await probe(path);
    expect(probed.videoFrames).toBe(120);
    const text = await probeTextTrack(path);
    expect(text.codecTag).toBe('wvtt');
    expect(text.cues).toEqual([]);
  });

  it('puts each cue at its time after the whole video was written', async () => {
    const path = join(dir, 'cues.mp4');
    const writer = await LiveMp4Writer.create(path, { video: { width: 320, height: 240 } });
    for (const [i, au] of units.entries()) {
      await writer.addVideo(au, isKeyframe(au), i / 10, 0.1);
    }
    const cues = messageCues([
      { direction: 'in', body: { text: 'first & <one>' }, recordingMs: 0 },
      { direction: 'out', body: { text: 'second' }, recordingMs: 1_250 },
      { direction: 'in', body: { text: 'third' }, recordingMs: 9_001 },
    ]);
    await writer.addCues(cues);
    const { sha256 } = await writer.finalize();
    expect(createHash('sha256').update(readFileSync(path)).digest('hex')).toBe(sha256);
    expect((await probe(path)).videoFrames).toBe(120);
    const text = await probeTextTrack(path);
    expect(text.codecType).toBe('data');
    expect(text.cues).toEqual([
      { startMs: 0, endMs: 1_250, text: '<v client>first &amp; &lt;one&gt;</v>' },
      { startMs: 1_250, endMs: 6_250, text: '<v server>second</v>' },
      { startMs: 9_001, endMs: 14_001, text: '<v client>third</v>' },
    ]);
  });
});
