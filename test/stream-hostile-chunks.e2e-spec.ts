import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '../src/common/error-code';
import { encodeMediaMessage, FLAG_KEY, Track } from '../src/protocol/media-header';
import { call, startTestApp, type TestApp } from './support/app';
import { besideCanary } from './support/canary';
import {
  avcc,
  avcCParameterSets,
  type EncodedAudio,
  encodedOpus,
  type EncodedVideo,
  encodedVideo,
} from './support/encoded-media';
import { postFrames } from './support/frames-body';
import { probe } from './support/media';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

jest.setTimeout(240_000);
const EVENT_MS = 60_000;

/**
 * Hostile compressed chunks: each is refused with `bad_frame` before it is stored, the session
 * goes on from the next key frame, and a canary streaming beside it is undisturbed.
 */
describe('hostile compressed chunks', () => {
  let app: TestApp;
  let dir: string;
  let h264: EncodedVideo;
  let h264Small: EncodedVideo;
  let vp9: EncodedVideo;
  let vp9Big: EncodedVideo;
  let opus: EncodedAudio;
  const admin = hsToken({ sub: 'ops', scope: 'admin' });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fg-hostile-'));
    [h264, h264Small, vp9, vp9Big, opus] = await Promise.all([
      encodedVideo(dir, 'h264', { width: 640, height: 480, frames: 30, gop: 10 }),
      encodedVideo(dir, 'h264', { width: 320, height: 240, frames: 10, gop: 10 }),
      encodedVideo(dir, 'vp9', { width: 320, height: 240, frames: 10, gop: 10 }),
      encodedVideo(dir, 'vp9', { width: 1280, height: 720, frames: 1, gop: 10 }),
      encodedOpus(dir, 1),
    ]);
    app = await startTestApp({ env: { STREAM_MAX_FPS: '2000', STREAM_MAX_KBPS: '1000000' } });
    const res = await call(app.url, 'PUT', '/v1/admin/channels/counter-640/quota', {
      token: admin,
      body: { maxWidth: 640, maxHeight: 480 },
    });
    expect(res.status).toBe(200);
  });
  afterAll(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Sends one chunk and returns the server's verdict on it: its ack, or its bad_frame. */
  async function verdict(client: StreamClient, seq: number, chunk: Buffer, key: boolean) {
    client.sendChunk(seq, seq * 100, chunk, key);
    await client.acksUntil(seq, EVENT_MS);
    const refused = client.messages.find((m) => m.type === 'error' && m.seq === seq);
    return refused && refused.type === 'error' ? refused : null;
  }

  it('refuses truncated NAL units, an SPS change, a false key flag and garbage; records the rest', async () => {
    const { sessionId, rejected } = await besideCanary(app, async () => {
      const client = await StreamClient.connect(app.url, {
        token: hsToken({ sub: 'teller', channel: 'counter-640' }),
      });
      const opened = await client.open({
        video: {
          width: 640,
          height: 480,
          fps: 10,
          codec: h264.codec,
          description: h264.description,
        },
      });
      const c = h264.chunks;
      expect(await verdict(client, 1, c[0].data, true)).toBeNull();
      expect(await verdict(client, 2, c[1].data, false)).toBeNull();

      const truncated = c[2].data.subarray(0, Math.floor(c[2].data.length / 2));
      expect(await verdict(client, 3, truncated, false)).toMatchObject({
        code: ErrorCode.BadFrame,
        seq: 3,
      });
      expect(await client.next('keyframe')).toEqual({ type: 'keyframe', reason: 'refused' });
      expect(await verdict(client, 4, c[10].data, true)).toBeNull();

      // A delta flagged as a key frame.
      expect((await verdict(client, 5, c[11].data, true))?.message).toMatch(/key/i);

      // A key frame carrying the SPS of a 320×240 stream: the configuration changes mid-stream.
      const foreign = avcCParameterSets(h264Small.description as string);
      const changed = Buffer.concat([avcc(foreign.sps[0], foreign.pps[0]), c[20].data]);
      expect((await verdict(client, 6, changed, true))?.message).toMatch(/SPS/);

      expect(await verdict(client, 7, randomBytes(2_000), true)).toMatchObject({
        code: ErrorCode.BadFrame,
      });
      for (let i = 20, seq = 8; i < 30; i++, seq++) {
        expect(await verdict(client, seq, c[i].data, c[i].key)).toBeNull();
      }
      client.send({ type: 'close' });
      const closed = await client.next('closed', EVENT_MS);
      expect(closed.recording).toMatchObject({ status: 'ready' });
      return { sessionId: opened.sessionId, rejected: 4 };
    });

    // 2 + 1 + 10 chunks accepted, 4 refused: the recording holds exactly the accepted ones.
    const session = await app.db.query<{ rejected_frames: number }>(
      'SELECT rejected_frames FROM sessions WHERE id = $1',
      [sessionId],
    );
    expect(Number(session.rows[0].rejected_frames)).toBe(rejected);
    const row = await app.db.query<{ path: string; frame_count: number }>(
      'SELECT path, frame_count FROM recordings WHERE session_id = $1',
      [sessionId],
    );
    expect(row.rows[0].frame_count).toBe(13);
    expect((await probe(row.rows[0].path)).videoFrames).toBe(13);
    await waitFor(
      async () =>
        (
          await app.db.query<{ decode_check: string }>(
            'SELECT decode_check FROM recordings WHERE session_id = $1',
            [sessionId],
          )
        ).rows[0].decode_check === 'passed',
      EVENT_MS,
      'decode check passed',
    );
  });

  it('refuses a VP9 key frame over the channel limit and a malformed Opus packet', async () => {
    await besideCanary(app, async () => {
      const client = await StreamClient.connect(app.url, {
        token: hsToken({ sub: 'teller', channel: 'counter-640' }),
      });
      await client.open({
        video: { width: 320, height: 240, fps: 10, codec: vp9.codec },
        audio: { sampleRate: 48_000, channels: 1, codec: 'opus', description: opus.description },
      });
      expect(await verdict(client, 1, vp9.chunks[0].data, true)).toBeNull();
      expect((await verdict(client, 2, vp9Big.chunks[0].data, true))?.message).toMatch(
        /1280x720|1280×720|limit/,
      );
      // Code 3 (an arbitrary number of frames) with a frame count of 0.
      client.ws.send(encodeMediaMessage(Track.Audio, 3, 200, Buffer.from([0xfb, 0x00])));
      await client.acksUntil(3, EVENT_MS);
      expect(client.messages.find((m) => m.type === 'error' && m.seq === 3)).toMatchObject({
        code: ErrorCode.BadFrame,
      });
      client.ws.send(encodeMediaMessage(Track.Audio, 4, 220, opus.packets[0]));
      await client.acksUntil(4, EVENT_MS);
      expect(client.messages.find((m) => m.type === 'error' && m.seq === 4)).toBeUndefined();
      client.send({ type: 'close' });
      expect((await client.next('closed', EVENT_MS)).recording).toMatchObject({ status: 'ready' });
    });
  });

  it('answers a fallback body with the refused chunks and the key frame it wants, and records the rest', async () => {
    const token = hsToken({ sub: 'teller', channel: 'counter-640' });
    const opened = await call<{ sessionId: string; resumeToken: string }>(
      app.url,
      'POST',
      '/v1/sessions',
      {
        token,
        body: {
          video: {
            width: 640,
            height: 480,
            fps: 10,
            codec: h264.codec,
            description: h264.description,
          },
        },
      },
    );
    expect(opened.status).toBe(201);
    const { sessionId, resumeToken } = opened.body;
    const c = h264.chunks;
    const message = (seq: number, chunk: Buffer, key: boolean) =>
      encodeMediaMessage(Track.Video, seq, seq * 100, chunk, key ? FLAG_KEY : 0);
    // Key, delta, garbage, a delta after it (refused: it would decode against a missing frame).
    const first = await postFrames(
      app.url,
      sessionId,
      token,
      resumeToken,
      lengthPrefixed([
        message(1, c[0].data, true),
        message(2, c[1].data, false),
        message(3, randomBytes(500), false),
        message(4, c[3].data, false),
      ]),
    );
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      ack: 4,
      refused: [
        { seq: 3, code: ErrorCode.BadFrame, message: expect.any(String) },
        { seq: 4, code: ErrorCode.BadFrame, message: expect.stringMatching(/key frame/) },
      ],
      keyframe: 'refused',
    });
    const second = await postFrames(
      app.url,
      sessionId,
      token,
      resumeToken,
      lengthPrefixed(c.slice(10, 20).map((chunk, i) => message(5 + i, chunk.data, chunk.key))),
    );
    expect(second.body).toMatchObject({ ack: 14 });
    expect(second.body.refused).toBeUndefined();
    expect(second.body.keyframe).toBeUndefined();
    const closed = await call(app.url, 'POST', `/v1/sessions/${sessionId}/close`, {
      token,
      headers: { 'x-resume-token': resumeToken },
    });
    expect(closed.status).toBe(200);
    expect(closed.body).toMatchObject({ recording: { status: 'ready' } });
    const row = await app.db.query<{ path: string; frame_count: number }>(
      'SELECT path, frame_count FROM recordings WHERE session_id = $1',
      [sessionId],
    );
    expect(row.rows[0].frame_count).toBe(12);
    expect((await probe(row.rows[0].path)).videoFrames).toBe(12);
  });
});

function lengthPrefixed(messages: Buffer[]): Buffer {
  return Buffer.concat(
    messages.flatMap((m) => {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(m.length);
      return [length, m];
    }),
  );
}
