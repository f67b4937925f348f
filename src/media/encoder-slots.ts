/**
 * The node's live encoder slots: at most `max` sessions encode at once. A slot is taken with
 * `tryAcquire()` or, when none is free, waited for in FIFO order; `release()` hands a freed slot
 * straight to the longest waiter, so `active` never drops below `max` while someone waits.
 */
export class EncoderSlots {
  private used = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly max: number) {}

  /** Slots in use (a slot handed to a waiter stays counted). */
  get active(): number {
    return this.used;
  }

  /** Callers waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Takes a free slot; false when all are in use. */
  tryAcquire(): boolean {
    if (this.used < this.max) {
      this.used++;
      return true;
    }
    return false;
  }

  /**
   * Waits for a slot. `promise` resolves true with a slot; `cancel()` stops waiting and resolves
   * it with false (the caller goes on without a slot). Cancelling after the slot came is a no-op:
   * the caller then holds the slot and must release it.
   */
  wait(): { promise: Promise<boolean>; cancel(): void } {
    let settle: (gotSlot: boolean) => void = () => undefined;
    const promise = new Promise<boolean>((resolve) => {
      settle = resolve;
    });
    const waiter = () => settle(true);
    this.waiters.push(waiter);
    return {
      promise,
      cancel: () => {
        const i = this.waiters.indexOf(waiter);
        if (i !== -1) {
          this.waiters.splice(i, 1);
          settle(false);
        }
      },
    };
  }

  /**
   * Gives a slot back: to the longest waiter if there is one. Callers release only what they hold;
   * an extra release is ignored rather than thrown, since it runs in promise callbacks.
   */
  release(): void {
    const next = this.waiters.shift();
    if (next) {
      next();
    } else if (this.used > 0) {
      this.used--;
    }
  }
}
