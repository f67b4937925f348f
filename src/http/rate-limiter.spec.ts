import { RateLimiter } from './rate-limiter';

describe('RateLimiter', () => {
  it('grants a minute of budget at once, then refills evenly and says when', () => {
    const limiter = new RateLimiter({ perMin: 60, maxKeys: 10 });
    for (let i = 0; i < 60; i++) {
      expect(limiter.take('a', 0)).toBe(0);
    }
    expect(limiter.take('a', 0)).toBe(1000);
    expect(limiter.check('a', 500)).toBe(500);
    expect(limiter.take('a', 1000)).toBe(0);
    // Another key has its own bucket.
    expect(limiter.take('b', 1000)).toBe(0);
  });

  it('check does not take', () => {
    const limiter = new RateLimiter({ perMin: 1, maxKeys: 10 });
    expect(limiter.check('a', 0)).toBe(0);
    expect(limiter.check('a', 0)).toBe(0);
    expect(limiter.take('a', 0)).toBe(0);
    expect(limiter.check('a', 0)).toBe(60_000);
  });

  it('holds at most maxKeys, forgetting the least recently used', () => {
    const limiter = new RateLimiter({ perMin: 1, maxKeys: 2 });
    limiter.take('a', 0);
    limiter.take('b', 0);
    // A use makes 'a' the most recent: 'b' is the one a new key evicts.
    expect(limiter.take('a', 0)).toBeGreaterThan(0);
    limiter.take('c', 0);
    expect(limiter.size).toBe(2);
    expect(limiter.check('a', 0)).toBeGreaterThan(0);
    expect(limiter.check('b', 0)).toBe(0);
  });
});
