import { availableParallelism } from 'node:os';

/**
 * Spaces out process starts. A new ffmpeg spends about 30 ms of CPU before its first frame. When
 * 48 sessions began recording within one second (bench:ingest, paced overload), the 36 encoders
 * they started blocked the loop for 0.5 s (each start then forked the service on its event loop,
 * which the process launcher now does instead) and then, all busy at once at the service's
 * priority, left it a thirty-seventh of the cores: acks came 1–2 s late. Spaced by
 * SPAWN_SPACING_MS per core, starts queue (their input waits in a bounded buffer, the frames in
 * the spool) and the cores keep room for the loop; a start with nothing queued before it goes at
 * once, so an ordinary session is never delayed.
 */
export class SpawnPacer {
  private readonly queue: Array<() => void> = [];
  private nextAt = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly spacingMs: number) {}

  /** Starts waiting for their turn. */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Runs `start` now if its turn has come, or later in FIFO order. Returns a cancel function: a
   * start cancelled before its turn never runs.
   */
  schedule(start: () => void): () => void {
    if (this.queue.length === 0 && performance.now() >= this.nextAt) {
      this.nextAt = performance.now() + this.spacingMs;
      start();
      return () => undefined;
    }
    this.queue.push(start);
    this.arm();
    return () => {
      const i = this.queue.indexOf(start);
      if (i !== -1) {
        this.queue.splice(i, 1);
      }
    };
  }

  private arm(): void {
    if (this.timer || this.queue.length === 0) {
      return;
    }
    this.timer = setTimeout(
      () => {
        this.timer = null;
        const start = this.queue.shift();
        if (start) {
          this.nextAt = performance.now() + this.spacingMs;
          start();
        }
        this.arm();
      },
      Math.max(0, this.nextAt - performance.now()),
    );
  }
}

/**
 * Per core, the time between two ffmpeg starts: 50 ms gives each start's fork (in the launcher)
 * and 30 ms of encoder set-up room on a core, so a burst never takes more than about half of the
 * cores (2 cores: 40 starts a second).
 */
const SPAWN_SPACING_MS = 50;

/** Every ffmpeg the service runs starts through this one pacer. */
export const FFMPEG_SPAWNS = new SpawnPacer(SPAWN_SPACING_MS / availableParallelism());
