import type { CpuClass } from '../../media/cpu-class';

/** What a job runs with. */
export interface EngineContext {
  /** Absolute path of the job's folder; every input is inside it, outputs go to `out/` in it. */
  dir: string;
  /** Aborted = cancel: every process of the job is killed (gone within 2 s), and the run rejects with JobCancelledError. */
  signal: AbortSignal;
  /**
   * 0..100 from ffmpeg's `-progress` (output time against the expected output duration), at
   * most about twice a second, never going back; 100 once the outputs are written.
   */
  onProgress(percent: number): void;
  tools: { ffmpeg: string; ffprobe: string };
  /**
   * CPU class of the job's processes; default `background` (SCHED_IDLE and nice 19): live
   * recording comes first, jobs take the CPU it leaves (src/media/cpu-class.ts).
   */
  cpuClass?: CpuClass;
}

/** One file a job wrote into `dir/out/`. */
export interface JobOutput {
  /** File name inside `dir/out/`, e.g. `video.mp4`, `thumb-0003.jpg`, `sprite.jpg`, `index.vtt`. */
  name: string;
  contentType: string;
  /** Exactly one output of a job is primary: what `GET …/result` returns. */
  primary: boolean;
  /** ffprobe's facts (format, duration, streams: codec, size, …); null for non-media (vtt). */
  probe: Record<string, unknown> | null;
  sha256: string;
  bytes: number;
}
