/**
 * Encoders that a `close` is waiting for and that are behind (their client ran ahead of real
 * time). In the background class they could wait for ever on a machine whose cores other work
 * keeps busy; all at the service's priority, 100 of them closing at once starved Postgres. So a
 * few lanes (one per core) run at the service's priority, the others wait at the lowest share
 * (nice 19) and take a lane, first come first served, as one frees.
 */
export class FinishLanes {
  private inUse = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly lanes: number) {}

  /**
   * Runs `promote` now if a lane is free, else once one is; returns the release, to be called
   * exactly once when the encoder is done (or no longer needs the lane). A release before the
   * promotion just leaves the queue.
   */
  enter(promote: () => void): () => void {
    let state: 'waiting' | 'running' | 'done' = 'waiting';
    const run = (): void => {
      state = 'running';
      this.inUse++;
      promote();
    };
    if (this.inUse < this.lanes) {
      run();
    } else {
      this.waiting.push(run);
    }
    return () => {
      if (state === 'running') {
        this.inUse--;
        this.waiting.shift()?.();
      } else if (state === 'waiting') {
        const i = this.waiting.indexOf(run);
        if (i !== -1) {
          this.waiting.splice(i, 1);
        }
      }
      state = 'done';
    };
  }

  /** Encoders at the service's priority, and those waiting for a lane. */
  get status(): { running: number; waiting: number } {
    return { running: this.inUse, waiting: this.waiting.length };
  }
}
