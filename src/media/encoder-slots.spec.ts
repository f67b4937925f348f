import fc from 'fast-check';
import { EncoderSlots } from './encoder-slots';

describe('EncoderSlots', () => {
  it('hands out at most max slots and refuses the next', () => {
    const slots = new EncoderSlots(2);
    expect([slots.tryAcquire(), slots.tryAcquire(), slots.tryAcquire()]).toEqual([
      true,
      true,
      false,
    ]);
    expect(slots.active).toBe(2);
    slots.release();
    expect(slots.active).toBe(1);
    expect(slots.tryAcquire()).toBe(true);
  });

  it('gives a released slot to the longest waiter, in order, without freeing it in between', async () => {
    const slots = new EncoderSlots(1);
    slots.tryAcquire();
    const first = slots.wait();
    const second = slots.wait();
    expect(slots.waiting).toBe(2);
    slots.release();
    await expect(first.promise).resolves.toBe(true);
    expect(slots.active).toBe(1);
    expect(slots.tryAcquire()).toBe(false);
    slots.release();
    await expect(second.promise).resolves.toBe(true);
    slots.release();
    expect(slots.active).toBe(0);
  });

  it('resolves a cancelled wait with false and skips it when a slot frees', async () => {
    const slots = new EncoderSlots(1);
    slots.tryAcquire();
    const cancelled = slots.wait();
    const kept = slots.wait();
    cancelled.cancel();
    await expect(cancelled.promise).resolves.toBe(false);
    expect(slots.waiting).toBe(1);
    slots.release();
    await expect(kept.promise).resolves.toBe(true);
    // Cancelling after the slot came changes nothing: the holder releases it.
    kept.cancel();
    expect(slots.active).toBe(1);
    slots.release();
    expect(slots.active).toBe(0);
  });

  it('ignores a release without an acquire instead of going negative', () => {
    const slots = new EncoderSlots(1);
    slots.release();
    expect(slots.active).toBe(0);
    expect(slots.tryAcquire()).toBe(true);
    expect(slots.tryAcquire()).toBe(false);
  });

  it('never exceeds max and ends with every slot free, for any interleaving', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.constantFrom('acquire', 'wait', 'cancel', 'release'), { maxLength: 60 }),
        async (max, ops) => {
          const slots = new EncoderSlots(max);
          let held = 0;
          const pending: Array<{ cancel(): void; got: boolean | null }> = [];
          for (const op of ops) {
            if (op === 'acquire' && slots.tryAcquire()) {
              held++;
            } else if (op === 'wait') {
              const w = slots.wait();
              const entry = { cancel: () => w.cancel(), got: null as boolean | null };
              void w.promise.then((got) => {
                entry.got = got;
                if (got) {
                  held++;
                }
              });
              pending.push(entry);
            } else if (op === 'cancel' && pending.length > 0) {
              pending.shift()?.cancel();
            } else if (op === 'release' && held > 0) {
              held--;
              slots.release();
            }
            await Promise.resolve();
            expect(slots.active).toBeLessThanOrEqual(max);
          }
          pending.forEach((p) => p.cancel());
          await Promise.resolve();
          while (held > 0) {
            held--;
            slots.release();
            await Promise.resolve();
          }
          expect(slots.active).toBe(0);
          expect(slots.waiting).toBe(0);
        },
      ),
    );
  });
});
