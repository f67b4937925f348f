import { Inject, Injectable } from '@nestjs/common';
import { availableParallelism } from 'node:os';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { RecordingService } from '../media/recording.service';
import { BEHIND_FRAMES } from '../stream/capacity';
import { CapacityService } from '../stream/capacity.service';

/** What the node's live recording uses now, as the job budget sees it. */
export interface LiveLoad {
  /** Live encoder slots: in use, waited for, and the node's maximum (RECORDING_MAX_ENCODERS). */
  encoders: { active: number; waiting: number; max: number };
  /** Live recorders behind their sessions (or encoding from the spool). */
  recordersBehind: number;
  /** Recording capacity in reference frames per second (CapacityService). */
  capacityFps: number;
  budgetFps: number;
  demandFps: number;
  /** The encoders were the bottleneck over the last sample. */
  saturated: boolean;
}

/**
 * Whether one more media job may start now, beside `running` ones. Live recording always comes
 * first, so a job starts only when live recording leaves room for it:
 * - fewer than `concurrency` jobs run (MEDIA_JOB_CONCURRENCY);
 * - no session waits for an encoder slot and no live recorder is behind;
 * - the live encoders and the jobs together stay within the node's encoder slots. Jobs count
 *   against the slots here, but live sessions never count jobs: they take slots from
 *   EncoderSlots alone, so a live session never waits for a job's slot;
 * - the sessions' declared demand fits their budget (the capacity less
 *   RECORDING_CAPACITY_HEADROOM), and with a core's share of the capacity for each job it fits
 *   the capacity (jobs may use the headroom: they yield it at once, see below); and the encoders
 *   are not saturated.
 * Once started, a job runs in the background CPU class (SCHED_IDLE, nice 19): when sessions
 * arrive later it yields the cores to them rather than competing (docs/media-jobs.md, Priority).
 */
export function roomForJob(
  load: LiveLoad,
  running: number,
  concurrency: number,
  cores: number,
): boolean {
  if (running >= concurrency) {
    return false;
  }
  if (load.encoders.waiting > 0 || load.recordersBehind > 0 || load.saturated) {
    return false;
  }
  if (load.encoders.active + running + 1 > load.encoders.max) {
    return false;
  }
  const perJob = load.capacityFps / cores;
  return (
    load.demandFps <= load.budgetFps && load.demandFps + (running + 1) * perJob <= load.capacityFps
  );
}

/** The default MEDIA_JOB_CONCURRENCY: one job per two cores, at least one. */
export function defaultJobConcurrency(cores: number): number {
  return Math.max(1, Math.floor(cores / 2));
}

/** Reads the live load from the recording and capacity services. */
@Injectable()
export class JobBudget {
  readonly concurrency: number;
  private readonly cores = availableParallelism();

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly recordings: RecordingService,
    private readonly capacity: CapacityService,
  ) {
    this.concurrency = config.MEDIA_JOB_CONCURRENCY ?? defaultJobConcurrency(this.cores);
  }

  liveLoad(): LiveLoad {
    const { encoders, recorders } = this.recordings.status();
    const stats = this.capacity.stats();
    return {
      encoders,
      recordersBehind: recorders.filter((r) => r.fromSpool || r.backlogFrames >= BEHIND_FRAMES)
        .length,
      capacityFps: stats.capacityFps,
      budgetFps: stats.budgetFps,
      demandFps: stats.demandFps,
      saturated: stats.saturated,
    };
  }

  /** Whether a job may start beside `running` others (see roomForJob). */
  hasRoom(running: number): boolean {
    return roomForJob(this.liveLoad(), running, this.concurrency, this.cores);
  }
}
