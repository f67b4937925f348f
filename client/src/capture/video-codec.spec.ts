import { videoCodecFamily } from '../../../src/protocol/codecs';
import {
  codecCandidates,
  defaultBitrate,
  encoderRate,
  fromBase64,
  MIN_BITRATE,
  sameBytes,
  toBase64,
  VIDEO_CODEC_CHOICES,
  type EncoderRateInput,
} from './video-codec';

describe('codecCandidates', () => {
  it('tries H.264 Baseline first, then VP9, for auto; nothing for jpeg', () => {
    expect(codecCandidates('auto', 640, 480)).toEqual([
      'avc1.42001e',
      'avc1.42e01e',
      'avc1.4d001e',
      'vp09.00.30.08',
    ]);
    expect(codecCandidates('vp8', 640, 480)).toEqual(['vp8']);
    expect(codecCandidates('jpeg', 640, 480)).toEqual([]);
  });

  it('names a level that fits the size', () => {
    expect(codecCandidates('h264', 1280, 720)[0]).toBe('avc1.42001f');
    expect(codecCandidates('h264', 1920, 1080)[0]).toBe('avc1.420028');
    expect(codecCandidates('vp9', 1920, 1080)).toEqual(['vp09.00.40.08']);
  });

  it('gives only codec strings the server reads as the family chosen', () => {
    const families = { auto: ['avc', 'vp9'], h264: ['avc'], vp9: ['vp9'], vp8: ['vp8'], jpeg: [] };
    for (const choice of VIDEO_CODEC_CHOICES) {
      for (const [w, h] of [
        [320, 240],
        [1280, 720],
        [3840, 2160],
      ]) {
        for (const codec of codecCandidates(choice, w, h)) {
          expect(families[choice]).toContain(videoCodecFamily(codec));
        }
      }
    }
  });
});

describe('encoderRate', () => {
  const base: EncoderRateInput = {
    family: 'vp9',
    targetBitrate: defaultBitrate(640, 480, 10),
    quality: 1,
    fps: 10,
    targetFps: 10,
    width: 640,
    height: 480,
    maxWidth: 1920,
    maxHeight: 1080,
    maxKbps: 16_000,
    reservedBitrate: 0,
  };

  it('spends the target at full level and full size', () => {
    expect(defaultBitrate(640, 480, 10)).toBe(307_200);
    expect(encoderRate(base)).toEqual({ bitrate: 307_200, width: 640, height: 480 });
  });

  it('keeps the bits per frame when the frame rate drops, so that a bandwidth quota is relieved', () => {
    expect(encoderRate({ ...base, fps: 5 }).bitrate).toBe(153_600);
  });

  it('never asks more than the quota leaves after the audio, nor less than the floor', () => {
    // 1000 kbit/s quota, 768 kbit/s of PCM: 800 − 768 = 32 kbit/s left, below the floor.
    expect(encoderRate({ ...base, maxKbps: 1000, reservedBitrate: 768_000 }).bitrate).toBe(
      MIN_BITRATE,
    );
    expect(encoderRate({ ...base, targetBitrate: 10_000_000, maxKbps: 2000 }).bitrate).toBe(
      1_600_000,
    );
  });

  it('shrinks VP8/VP9 once a frame would get too few bits, and never H.264', () => {
    expect(encoderRate({ ...base, quality: 0.5 })).toMatchObject({ width: 640, height: 480 });
    expect(encoderRate({ ...base, quality: 0.3 })).toMatchObject({ width: 480, height: 360 });
    expect(encoderRate({ ...base, quality: 0.1 })).toMatchObject({ width: 320, height: 240 });
    expect(encoderRate({ ...base, family: 'avc', quality: 0.1 })).toMatchObject({
      width: 640,
      height: 480,
    });
  });

  it('fits VP8/VP9 into a channel size that shrank since the open', () => {
    expect(encoderRate({ ...base, maxWidth: 320, maxHeight: 1080 })).toMatchObject({
      width: 320,
      height: 240,
    });
  });
});

describe('base64 descriptions', () => {
  it('round-trips an avcC and compares bytes', () => {
    const avcC = Uint8Array.from([1, 0x42, 0xc0, 0x16, 0xff, 0xe1, 0, 0x12, 0x67]);
    expect(toBase64(avcC)).toBe(Buffer.from(avcC).toString('base64'));
    expect(sameBytes(fromBase64(toBase64(avcC)), avcC)).toBe(true);
    expect(sameBytes(avcC, avcC.subarray(1))).toBe(false);
    expect(sameBytes(null, null)).toBe(true);
    expect(sameBytes(avcC, null)).toBe(false);
  });
});
