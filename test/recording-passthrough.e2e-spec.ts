import { randomFillSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DecodeCheckService } from '../src/media/decode-check.service';
import type { RecordingStatus } from '../src/media/recording.service';
import { encodeMediaMessage, Track } from '../src/protocol/media-header';
import { call, startTestApp, type TestApp } from './support/app';
import {
  type EncodedAudio,
  encodedOpus,
  type EncodedVideo,
  encodedVideo,
  recordedVideoPackets,
} from './support/encoded-media';
import { probe } from './support/media';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

jest.setTimeout(180_000);
const EVENT_MS = 60_000;

interface RecordingRow {
  status: string;
  path: string;
  frame_count: number;
  duration_ms: number;
  width: number;
  height: number;
  video_codec: string;
  audio_codec: string | null;
  decode_check: string | null;
  decode_frames: number | null;
  decode_errors: string | null;
}

describe('pass-through recording of compressed video', () => {
  let app: TestApp;
  let dir: string;
  let h264: EncodedVideo;
  let vp9: EncodedVideo;
  let vp8: EncodedVideo;
  let opus: EncodedAudio;
  const token = hsToken({ sub: 'teller', channel: 'branch-app' });
  const admin = hsToken({ sub: 'ops', scope: 'admin' });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fg-passthrough-'));
    [h264, vp9, vp8, opus] = await Promise.all([
      encodedVideo(dir, 'h264', { width: 640, height: 480, frames: 50, gop: 20 }),
      encodedVideo(dir, 'vp9', { width: 320, height: 240, frames: 30, gop: 10 }),
      encodedVideo(dir, 'vp8', { width: 320, height: 240, frames: 30, gop: 10 }),
      encodedOpus(dir, 3),
    ]);
    app = await startTestApp({ env: { STREAM_MAX_FPS: '2000', STREAM_MAX_KBPS: '1000000' } });
  });
  afterAll(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function recordingOf(sessionId: string): Promise<RecordingRow> {
    const r = await app.db.query<RecordingRow>('SELECT * FROM recordings WHERE session_id = $1', [
      sessionId,
    ]);
    return r.rows[0];
  }

  /** Sends the chunks at the capture times `pts` (ms), with their key flags, then waits for acks. */
  async function sendChunks(
    client: StreamClient,
    video: EncodedVideo,
    pts: number[],
    firstSeq = 1,
  ) {
    let seq = firstSeq - 1;
    for (const [i, t] of pts.entries()) {
      const chunk = video.chunks[i];
      client.sendChunk(++seq, t, chunk.data, chunk.key);
    }
    await client.acksUntil(seq, EVENT_MS);
    return seq;
  }

  it('muxes H.264 chunks as sent (byte for byte, no encoder slot) at their capture times', async () => {
    const client = await StreamClient.connect(app.url, { token });
    const opened = await client.open({
      video: { width: 640, height: 480, fps: 10, codec: h264.codec, description: h264.description },
    });
    expect(opened.media.video.codec).toBe(h264.codec);
    await sendChunks(
      client,
      h264,
      h264.chunks.map((_, i) => i * 100),
    );
    const status = await call(app.url, 'GET', '/v1/admin/recording', { token: admin });
    expect((status.body as RecordingStatus).encoders.active).toBe(0);
    client.send({ type: 'close' });
    const closed = await client.next('closed', EVENT_MS);
    expect(closed.recording).toMatchObject({ status: 'ready', durationMs: 5_000 });

    const row = await recordingOf(opened.sessionId);
    expect(row).toMatchObject({
      status: 'ready',
      frame_count: 50,
      width: 640,
      height: 480,
      video_codec: 'h264',
      audio_codec: null,
    });
    const p = await probe(row.path);
    expect(p).toMatchObject({ videoFrames: 50, width: 640, height: 480, videoCodec: 'h264' });
    expect(Math.abs(p.durationMs - 5_000)).toBeLessThanOrEqual(100);
    const packets = await recordedVideoPackets(row.path);
    expect(packets.map((p) => p.data.equals(h264.chunks[packets.indexOf(p)].data))).toEqual(
      h264.chunks.map(() => true),
    );
    expect(packets.map((p) => p.key)).toEqual(h264.chunks.map((c) => c.key));

    // The decode check, in the background: ffprobe decoded all 50 frames without a complaint.
    await waitFor(
      async () => (await recordingOf(opened.sessionId)).decode_check === 'passed',
      EVENT_MS,
      'decode check passed',
    );
    expect(await recordingOf(opened.sessionId)).toMatchObject({
      decode_frames: 50,
      decode_errors: null,
    });

    // The same check on a copy with garbage in the middle of its media data fails, saying why.
    const broken = join(dir, 'broken.mp4');
    const bytes = readFileSync(row.path);
    randomFillSync(bytes, Math.floor(bytes.length / 2), 4096);
    writeFileSync(broken, bytes);
    const outcome = await app.started.app.get(DecodeCheckService).decode(broken, 50);
    expect(outcome.check).toBe('failed');
    expect(outcome.errors).toEqual(expect.any(String));
  });

  it('records VP9 with Opus audio, each at its capture time', async () => {
    const client = await StreamClient.connect(app.url, { token });
    const opened = await client.open({
      video: { width: 320, height: 240, fps: 10, codec: vp9.codec },
      audio: { sampleRate: 48_000, channels: 1, codec: 'opus', description: opus.description },
    });
    expect(opened.media.audio).toEqual({ codec: 'opus' });
    // Video every 100 ms, Opus every 20 ms, interleaved by capture time as a client sends them.
    let seq = 0;
    let audio = 0;
    for (let v = 0; v < vp9.chunks.length; v++) {
      while (audio < opus.packets.length && audio * 20 < (v + 1) * 100) {
        client.ws.send(encodeMediaMessage(Track.Audio, ++seq, audio * 20, opus.packets[audio]));
        audio++;
      }
      client.sendChunk(++seq, v * 100, vp9.chunks[v].data, vp9.chunks[v].key);
    }
    await client.acksUntil(seq, EVENT_MS);
    client.send({ type: 'close' });
    const closed = await client.next('closed', EVENT_MS);
    expect(closed.recording).toMatchObject({ status: 'ready' });

    const row = await recordingOf(opened.sessionId);
    expect(row).toMatchObject({ frame_count: 30, video_codec: 'vp9', audio_codec: 'opus' });
    const p = await probe(row.path);
    expect(p).toMatchObject({ videoFrames: 30, width: 320, height: 240, videoCodec: 'vp9' });
    expect(p.audioCodec).toBe('opus');
    // 30 frames at 10 fps, and the first 3 s of audio beside them.
    expect(Math.abs(p.durationMs - 3_000)).toBeLessThanOrEqual(100);
    expect(p.audioDurationMs).not.toBeNull();
    expect(Math.abs((p.audioDurationMs ?? 0) - 3_000)).toBeLessThanOrEqual(100);

    // For players without VP9: a transcode job makes an H.264 + AAC copy (docs/recording.md).
    const jobs = hsToken({ sub: 'teller', scope: 'media:process' });
    const submitted = await call<{ id: string }>(app.url, 'POST', '/v1/media/jobs', {
      token: jobs,
      body: { type: 'transcode', input: { recording: opened.sessionId }, codec: 'h264' },
    });
    expect(submitted.status).toBe(202);
    let job: {
      state: string;
      outputs: Array<{ probe: { streams: Array<Record<string, unknown>> } }>;
    };
    await waitFor(
      async () => {
        job = (
          await call<typeof job>(app.url, 'GET', `/v1/media/jobs/${submitted.body.id}`, {
            token: jobs,
          })
        ).body;
        return ['completed', 'failed', 'cancelled'].includes(job.state);
      },
      EVENT_MS,
      'transcode settled',
    );
    expect(job!.state).toBe('completed');
    expect(job!.outputs[0].probe.streams.map((s) => s.codec)).toEqual(['h264', 'aac']);
  });

  it('keeps uneven capture timing of VP8 chunks, every frame at its own time', async () => {
    const client = await StreamClient.connect(app.url, { token });
    const opened = await client.open({ video: { width: 320, height: 240, codec: 'vp8' } });
    // 7–12 fps: gaps of 83 to 143 ms.
    const pts: number[] = [];
    for (let i = 0, t = 0; i < vp8.chunks.length; i++) {
      pts.push(t);
      t += [83, 143, 100, 91, 125][i % 5];
    }
    await sendChunks(client, vp8, pts);
    client.send({ type: 'close' });
    await client.next('closed', EVENT_MS);

    const row = await recordingOf(opened.sessionId);
    expect(row).toMatchObject({ status: 'ready', frame_count: 30, video_codec: 'vp8' });
    const p = await probe(row.path);
    expect(p).toMatchObject({ videoFrames: 30, videoCodec: 'vp8' });
    // The last frame lasts the nominal interval (100 ms at the default 10 fps).
    const expected = pts[pts.length - 1] + 100;
    expect(Math.abs(p.durationMs - expected)).toBeLessThanOrEqual(20);
    expect(Number(row.duration_ms)).toBe(expected);
  });

  it('continues the same recording after a resume, from the key frame the server asks for', async () => {
    const first = await StreamClient.connect(app.url, { token });
    const opened = await first.open({
      video: { width: 640, height: 480, fps: 10, codec: h264.codec, description: h264.description },
    });
    // Chunks 0–19: two GOPs of 20 frames... the first GOP and a key frame at 20 start the resume.
    const half = 20;
    const sent = await sendChunks(
      first,
      h264,
      Array.from({ length: half }, (_, i) => i * 100),
    );
    first.ws.terminate();
    await first.closed;

    const second = await StreamClient.connect(app.url, { token });
    second.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: opened.resumeToken });
    const resumed = await second.next('opened');
    expect(resumed.lastSeq).toBe(sent);
    expect(await second.next('keyframe')).toEqual({ type: 'keyframe', reason: 'resume' });
    let seq = sent;
    for (let i = half; i < h264.chunks.length; i++) {
      second.sendChunk(++seq, i * 100, h264.chunks[i].data, h264.chunks[i].key);
    }
    await second.acksUntil(seq, EVENT_MS);
    second.send({ type: 'close' });
    await second.next('closed', EVENT_MS);

    const row = await recordingOf(opened.sessionId);
    expect(row).toMatchObject({ status: 'ready', frame_count: 50 });
    const p = await probe(row.path);
    expect(p.videoFrames).toBe(50);
    expect(Math.abs(p.durationMs - 5_000)).toBeLessThanOrEqual(100);
  });
});
