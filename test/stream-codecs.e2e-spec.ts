import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '../src/common/error-code';
import { CloseCode } from '../src/protocol/close-codes';
import { call, startTestApp, type TestApp } from './support/app';
import { type EncodedVideo, encodedVideo } from './support/encoded-media';
import { jpegFrames } from './support/media';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';

const admin = hsToken({ sub: 'ops', scope: 'admin' });

describe('compressed video: negotiation and the channel policy', () => {
  let app: TestApp;

  let dir: string;
  let h264: EncodedVideo;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fg-codecs-'));
    h264 = await encodedVideo(dir, 'h264', { width: 320, height: 240, frames: 1 });
    app = await startTestApp();
  });
  afterAll(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function setPolicy(channel: string, body: Record<string, unknown>) {
    const res = await call(app.url, 'PUT', `/v1/admin/channels/${channel}/quota`, {
      token: admin,
      body,
    });
    expect(res.status).toBe(200);
    return res.body;
  }

  it('answers opened.media with the codec and the channel limits', async () => {
    await setPolicy('media-720', { maxWidth: 1280, maxHeight: 720 });
    const client = await StreamClient.connect(app.url, {
      token: hsToken({ channel: 'media-720' }),
    });
    const opened = await client.open({
      video: { width: 640, height: 480, fps: 10, codec: 'vp8' },
    });
    expect(opened.media).toEqual({
      video: {
        codec: 'vp8',
        maxWidth: 1280,
        maxHeight: 720,
        maxKbps: 16_000,
        keyframeIntervalMs: 5_000,
      },
      audio: null,
    });
    client.close();
    await client.closed;
  });

  it('refuses a codec or size the channel does not accept with codec_not_allowed, and the connection stays open for another open', async () => {
    await setPolicy('jpeg-only', { videoCodecs: ['jpeg'], maxWidth: 640, maxHeight: 480 });
    const client = await StreamClient.connect(app.url, {
      token: hsToken({ channel: 'jpeg-only' }),
    });
    client.send({ type: 'open', video: { width: 320, height: 240, codec: 'vp09.00.10.08' } });
    const refused = await client.next('error');
    expect(refused).toMatchObject({ code: ErrorCode.CodecNotAllowed });
    expect(refused.message).toMatch(
      /vp09\.00\.10\.08 is not accepted on this channel; accepted: jpeg/,
    );
    const opened = await client.open({ video: { width: 320, height: 240, fps: 10 } });
    expect(opened.media.video.codec).toBe('jpeg');
    client.close();
    await client.closed;

    await setPolicy('small-vp8', { videoCodecs: ['vp8'], maxWidth: 640, maxHeight: 480 });
    const big = await StreamClient.connect(app.url, { token: hsToken({ channel: 'small-vp8' }) });
    big.send({ type: 'open', video: { width: 1280, height: 720, codec: 'vp8' } });
    expect(await big.next('error')).toMatchObject({
      code: ErrorCode.CodecNotAllowed,
      message: expect.stringMatching(/1280x720 is over this channel's limit of 640x480/),
    });
    big.close();
    await big.closed;
  });

  it('refuses Opus beside JPEG, an avc1 open without its avcC, and a codec it does not know', async () => {
    const client = await StreamClient.connect(app.url, { token: hsToken({}) });
    client.send({
      type: 'open',
      video: { width: 320, height: 240 },
      audio: { sampleRate: 48_000, channels: 1, codec: 'opus' },
    });
    expect(await client.next('error')).toMatchObject({
      code: ErrorCode.CodecNotAllowed,
      message: expect.stringMatching(/opus audio needs compressed video/),
    });
    client.send({ type: 'open', video: { width: 320, height: 240, codec: 'avc1.42001f' } });
    expect(await client.next('error')).toMatchObject({
      code: ErrorCode.ValidationFailed,
      message: expect.stringMatching(/description/),
    });
    client.send({ type: 'open', video: { width: 320, height: 240, codec: 'hev1.1.6.L93.B0' } });
    expect(await client.next('error')).toMatchObject({ code: ErrorCode.ValidationFailed });
    // An avcC that does not parse, and a real one whose SPS codes another size than declared.
    client.send({
      type: 'open',
      video: { width: 320, height: 240, codec: 'avc1.42001f', description: 'AAAA' },
    });
    expect(await client.next('error')).toMatchObject({
      code: ErrorCode.ValidationFailed,
      message: expect.stringMatching(/^video: /),
    });
    client.send({
      type: 'open',
      video: { width: 640, height: 480, codec: h264.codec, description: h264.description },
    });
    expect(await client.next('error')).toMatchObject({
      code: ErrorCode.ValidationFailed,
      message: expect.stringMatching(/320x240 but open declared 640x480/),
    });
    client.close();
    await client.closed;
  });

  it('validates the channel policy the admin API sets', async () => {
    for (const body of [
      { videoCodecs: [] },
      { videoCodecs: ['h265'] },
      { videoCodecs: ['avc', 'avc'] },
      { maxWidth: 8 },
      { maxHeight: 10_000 },
    ]) {
      const res = await call(app.url, 'PUT', '/v1/admin/channels/bad-policy/quota', {
        token: admin,
        body,
      });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe(ErrorCode.ValidationFailed);
    }
  });

  it('closes with a protocol error when a JPEG session sets the key-frame flag', async () => {
    const [image] = await jpegFrames(320, 240, 1);
    const client = await StreamClient.connect(app.url, { token: hsToken({}) });
    await client.open({ video: { width: 320, height: 240, fps: 10 } });
    client.sendChunk(1, 0, image, true);
    const closed = await client.closed;
    expect(closed.code).toBe(CloseCode.Protocol);
    expect(closed.reason).toMatch(/bad_flags/);
  });

  it("refuses images-to-video from a compressed session's stored chunks, pointing to its recording", async () => {
    const token = hsToken({ sub: 'carol', scope: 'stream:publish media:process' });
    const client = await StreamClient.connect(app.url, { token });
    const opened = await client.open({ video: { width: 320, height: 240, codec: 'vp8' } });
    client.close();
    await client.closed;
    const res = await call(app.url, 'POST', '/v1/media/jobs', {
      token,
      body: { type: 'images-to-video', images: { sessionFrames: opened.sessionId }, fps: 10 },
    });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: ErrorCode.ValidationFailed });
    expect(res.body.message).toMatch(/sent vp8 video, not images; use its recording/);
  });
});
