import { CloseCode } from '../../src/protocol/close-codes';
import { backoffDelay, closeAction, DEFAULT_BACKOFF } from './reconnect-policy';

describe('backoffDelay', () => {
  const options = {
    ...DEFAULT_BACKOFF,
    initialDelayMs: 100,
    maxDelayMs: 1000,
    factor: 2,
    jitter: 0.5,
  };

  it('doubles from the initial delay up to the ceiling when the draw is 0', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(options, n, () => 0))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
  });

  it('takes at most the jitter fraction off each delay', () => {
    expect(backoffDelay(options, 3, () => 0.999999)).toBe(200);
    expect(backoffDelay(options, 3, () => 0.5)).toBe(300);
    expect(backoffDelay({ ...options, jitter: 0 }, 3, () => 0.9)).toBe(400);
  });
});

describe('closeAction', () => {
  it('resumes with backoff on 1006, 1011, 1012, 1013 and 4008', () => {
    for (const code of [
      1006,
      CloseCode.Internal,
      CloseCode.Restart,
      CloseCode.TryAgainLater,
      CloseCode.HeartbeatTimeout,
    ]) {
      expect(closeAction(code)).toBe('reconnect');
    }
  });

  it('asks for a fresh token on 4001', () => {
    expect(closeAction(CloseCode.TokenExpired)).toBe('refresh_token');
  });

  it('stops on 4003, 4004, 4029, 4009, 4000 and 1009', () => {
    for (const code of [
      CloseCode.Kicked,
      CloseCode.UnknownSession,
      CloseCode.Quota,
      CloseCode.Replaced,
      CloseCode.Protocol,
      CloseCode.TooLarge,
    ]) {
      expect(closeAction(code)).toBe('final');
    }
  });

  it('is done on 1000', () => {
    expect(closeAction(CloseCode.Normal)).toBe('done');
  });
});
