import { withDeadline } from './deadline';

describe('withDeadline', () => {
  it('resolves with the work when it settles first', async () => {
    await expect(withDeadline(Promise.resolve(7), 60_000, 'late')).resolves.toBe(7);
  });

  it('resolves with the fallback when the work never settles', async () => {
    await expect(withDeadline(new Promise<number>(() => undefined), 1, 'late')).resolves.toBe(
      'late',
    );
  });

  it('passes a rejection of the work on', async () => {
    await expect(withDeadline(Promise.reject(new Error('boom')), 60_000, 'late')).rejects.toThrow(
      'boom',
    );
  });
});
