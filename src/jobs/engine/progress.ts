/** At most one progress report per this many ms (the final 100 always goes out). */
export const PROGRESS_INTERVAL_MS = 500;

/**
 * Turns ffmpeg's `-progress` lines into a job's percentage: `out_time_us` (older builds name it
 * `out_time_ms`, in µs all the same) against the expected output duration, never going back,
 * reported at most every PROGRESS_INTERVAL_MS. A job made of several runs gives each a share:
 * `stage(from, to)` maps the next run's 0..100 onto from..to of the job.
 */
export class ProgressMeter {
  private percent = 0;
  private reported = -1;
  private lastReportAt = 0;
  private from = 0;
  private to = 100;
  private expectedUs = 0;

  constructor(
    private readonly onProgress: (percent: number) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The next run covers from..to of the job and should produce `expectedSeconds` of output. */
  stage(from: number, to: number, expectedSeconds: number): void {
    this.from = from;
    this.to = to;
    this.expectedUs = Math.max(1, expectedSeconds * 1e6);
    this.set(from);
  }

  /** One line of ffmpeg's `-progress` output. */
  line(line: string): void {
    const eq = line.indexOf('=');
    if (eq < 0) {
      return;
    }
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'out_time_us' || key === 'out_time_ms') {
      const us = Number(value);
      if (Number.isFinite(us) && us > 0) {
        const share = Math.min(1, us / this.expectedUs);
        this.set(this.from + (this.to - this.from) * share);
      }
    } else if (key === 'progress' && value === 'end') {
      this.set(this.to);
    }
  }

  /** Moves to `percent` of the job (never below what was reached). */
  set(percent: number): void {
    this.percent = Math.max(this.percent, Math.min(100, Math.max(0, percent)));
    const now = this.now();
    if (
      this.reported < 0 ||
      this.percent >= 100 ||
      now - this.lastReportAt >= PROGRESS_INTERVAL_MS
    ) {
      this.flush(now);
    }
  }

  /** The job is done: reports 100. */
  done(): void {
    this.percent = 100;
    this.flush(this.now());
  }

  private flush(now: number): void {
    const rounded = Math.floor(this.percent * 10) / 10;
    if (rounded > this.reported) {
      this.reported = rounded;
      this.lastReportAt = now;
      this.onProgress(rounded);
    }
  }
}
