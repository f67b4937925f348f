import { spawn, type ChildProcess } from 'node:child_process';
import { annexBToAvcc, splitAnnexBAccessUnits } from '../src/protocol/annexb';
import { startTestApp, type TestApp } from './support/app';
import { BUNDLED, encodeH264, runTool } from './support/bitstreams';
import { ensureClientBuilt } from './support/client-build';
import { probe } from './support/media';
import { pushResult, runPush, type PushRun } from './support/push-cli';
import { spooledFrames } from './support/spool-reader';
import { hsToken } from './support/tokens';

interface StreamFacts {
  codec_name: string;
  profile: string;
  level: number;
  width: number;
  height: number;
}

/** What ffprobe says of the first video stream of `args`' input. */
async function streamFacts(args: string[], input?: Uint8Array): Promise<StreamFacts> {
  const json = await runTool(
    BUNDLED.ffprobe,
    [
      ...['-v', 'error', '-select_streams', 'v:0'],
      ...['-show_entries', 'stream=codec_name,profile,level,width,height', '-of', 'json'],
      ...args,
    ],
    input,
  );
  return (JSON.parse(json.toString()) as { streams: StreamFacts[] }).streams[0];
}

/** The size of each video packet of a file, in order. */
async function packetSizes(path: string): Promise<number[]> {
  const csv = await runTool(BUNDLED.ffprobe, [
    ...['-v', 'error', '-select_streams', 'v:0'],
    ...['-show_entries', 'packet=size', '-of', 'csv=p=0', path],
  ]);
  return csv
    .toString()
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map(Number);
}

/**
 * `framegate-push --codec h264` with H.264 from ffmpeg on its stdin, as a camera gateway or a
 * transcoding pipeline would run it: the recording holds the access units as x264 made them.
 */
describe('framegate-push --codec h264', () => {
  let app: TestApp;
  const token = hsToken({ sub: 'alice', channel: 'branch-app' });
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    const build = ensureClientBuilt();
    // The spool is kept after the recording is ready, to read what was stored.
    [app] = await Promise.all([startTestApp({ env: { KEEP_SPOOL: 'true' } }), build]);
  });
  afterEach(() => {
    for (const child of children.splice(0)) {
      child.kill('SIGKILL');
    }
  });
  afterAll(async () => {
    await app?.close();
  });

  async function recordingPath(sessionId: string): Promise<string> {
    const row = await app.db.query<{ path: string }>(
      'SELECT path FROM recordings WHERE session_id = $1',
      [sessionId],
    );
    return row.rows[0].path;
  }

  /** Runs the CLI with `input` written to its stdin. */
  function pushStdin(args: string[], input: Uint8Array): PushRun {
    const run = runPush(['--url', app.url, '--token', token, '--codec', 'h264', ...args, '-']);
    children.push(run.child);
    run.child.stdin!.end(input);
    return run;
  }

  it('records 5 s of libx264 piped from ffmpeg as sent: one frame per access unit, same SPS, no re-encode', async () => {
    const ffmpeg = spawn(
      BUNDLED.ffmpeg,
      [
        ...['-hide_banner', '-loglevel', 'error', '-nostdin'],
        ...['-f', 'lavfi', '-i', 'testsrc2=size=640x480:rate=25', '-t', '5'],
        // No B-frames: chunks are recorded in capture order (x264's default would send B slices).
        ...['-c:v', 'libx264', '-g', '25', '-sc_threshold', '0', '-bf', '0'],
        ...['-bsf:v', 'h264_mp4toannexb', '-f', 'h264', '-'],
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(ffmpeg);
    const run = runPush(['--url', app.url, '--token', token, '--codec', 'h264', '-']);
    children.push(run.child);
    const piped: Buffer[] = [];
    ffmpeg.stdout.on('data', (chunk: Buffer) => piped.push(chunk));
    ffmpeg.stdout.pipe(run.child.stdin!);
    const { code, stdout, stderr } = await run.done;
    expect({ code, stderr: stderr.match(/error .*/g) }).toEqual({ code: 0, stderr: null });

    const source = Buffer.concat(piped);
    const accessUnits = splitAnnexBAccessUnits(source);
    expect(accessUnits).toHaveLength(125);
    const out = pushResult(stdout);
    expect(out).toMatchObject({ frames: 125, recording: { status: 'ready', durationMs: 5_000 } });

    // Stored as sent: each access unit's AVCC form, IDRs (every 25th) flagged key.
    const spooled = await spooledFrames(app.dataDir, out.sessionId);
    expect(spooled.map((f) => f.seq)).toEqual(accessUnits.map((_, i) => i + 1));
    expect(spooled.every((f, i) => f.payload.equals(annexBToAvcc(accessUnits[i])))).toBe(true);
    expect(spooled.filter((f) => f.key).map((f) => f.seq)).toEqual([1, 26, 51, 76, 101]);

    const path = await recordingPath(out.sessionId);
    const probed = await probe(path);
    expect(probed.videoCodec).toBe('h264');
    expect(probed.videoFrames).toBe(125);
    // No re-encode: the same profile, level and size as x264 made, and each sample is the chunk.
    expect(await streamFacts([path])).toEqual(await streamFacts(['-f', 'h264', 'pipe:0'], source));
    expect(await packetSizes(path)).toEqual(accessUnits.map((au) => annexBToAvcc(au).length));
  });

  it('closes with what it sent and exits 1 when the stream changes its SPS mid-way', async () => {
    const first = await encodeH264({ width: 320, height: 240, frames: 20, gop: 10 });
    const second = await encodeH264({ width: 640, height: 480, frames: 20, gop: 10 });
    const { code, stdout, stderr } = await pushStdin([], Buffer.concat([first, second])).done;
    expect(code).toBe(1);
    expect(stderr).toMatch(/error stream_changed: access unit 21 carries a new SPS/);
    const out = pushResult(stdout);
    expect(out).toMatchObject({ frames: 20, recording: { status: 'ready' } });
    const probed = await probe(await recordingPath(out.sessionId));
    expect([probed.videoFrames, probed.width, probed.height]).toEqual([20, 320, 240]);
  });

  it('stops at the first B slice with how to encode without, closing what it sent', async () => {
    const stream = await encodeH264({ width: 320, height: 240, frames: 20, gop: 10 }, ['-bf', '2']);
    const { code, stdout, stderr } = await pushStdin([], stream).done;
    expect(code).toBe(1);
    expect(stderr).toMatch(/error b_frames: access unit \d+ holds a B slice: .* -bf 0/);
    expect(stderr).not.toMatch(/bad_frame/);
    const out = pushResult(stdout);
    expect(out.recording.status).toBe('ready');
    expect((await probe(await recordingPath(out.sessionId))).videoFrames).toBe(out.frames);
  });

  it('times a live pipe by arrival: pts rising, every access unit once', async () => {
    const stream = await encodeH264({ width: 320, height: 240, frames: 30, gop: 10 });
    const { code, stdout } = await pushStdin(['--live'], stream).done;
    expect(code).toBe(0);
    const out = pushResult(stdout);
    expect(out.frames).toBe(30);
    const pts = (await spooledFrames(app.dataDir, out.sessionId)).map((f) => f.pts);
    expect(pts.every((p, i) => i === 0 || p > pts[i - 1])).toBe(true);
    expect((await probe(await recordingPath(out.sessionId))).videoFrames).toBe(30);
  });

  it('exits 64 when the input holds no IDR access unit with its parameter sets', async () => {
    const { code, stderr } = await pushStdin([], Buffer.from('not an H.264 stream at all')).done;
    expect(code).toBe(64);
    expect(stderr).toMatch(/no IDR access unit with its SPS and PPS in the input/);
  });
});
