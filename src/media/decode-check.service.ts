import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Repository } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { setCpuClass } from './cpu-class';
import { locateTool } from './ffmpeg-locator';
import { RecordingEntity } from './recording.entity';
import { RecordingService } from './recording.service';

/** Rows left `pending` by another process (or a restart) are looked for this often. */
const SWEEP_MS = 60_000;
/** A `checking` row whose checker died (a crash mid-check) is taken again after this long. */
const STALE_CHECK_MS = 30 * 60_000;
/** The decoder's report kept on the row, at most. */
const MAX_ERRORS_CHARS = 2_000;

/** What one decode pass found. */
export interface DecodeOutcome {
  check: 'passed' | 'failed';
  frames: number | null;
  errors: string | null;
}

/**
 * Decodes every ready recording end to end with ffprobe (`-count_frames`), one at a time in the
 * background CPU class, and writes the outcome on its row: `passed` when the decoder reported
 * nothing and counted the recording's frames, else `failed` with what it reported. A pass-through
 * recording holds the client's bitstream, which the server parsed but never decoded: this is where
 * a chunk that passed the parse but does not decode shows. The queue is the table itself (rows
 * `pending`), so a restart or another node picks up where this one stopped.
 */
@Injectable()
export class DecodeCheckService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(DecodeCheckService.name);
  private readonly ffprobePath: string;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private child: ChildProcess | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(RecordingEntity) private readonly rows: Repository<RecordingEntity>,
    recordings: RecordingService,
  ) {
    this.ffprobePath = locateTool('ffprobe', undefined).path;
    recordings.onReady(() => this.kick());
  }

  onApplicationBootstrap(): void {
    // A gateway runs no decoder: the workers check what they record (and any left pending).
    if (!this.config.RECORDING_DECODE_CHECK || this.config.NODE_ROLE === 'gateway') {
      return;
    }
    this.kick();
    this.timer = setInterval(() => this.kick(), SWEEP_MS);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.child?.kill('SIGKILL');
    await this.running;
  }

  /** Checks pending recordings until none is left; a call while running makes it look again. */
  kick(): void {
    if (
      this.stopped ||
      !this.config.RECORDING_DECODE_CHECK ||
      this.config.NODE_ROLE === 'gateway'
    ) {
      return;
    }
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain()
      .catch((err: unknown) => this.logger.warn({ err }, 'decode check stopped'))
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async drain(): Promise<void> {
    while (!this.stopped) {
      const claimed = await this.claim();
      if (!claimed) {
        return;
      }
      const outcome = await this.decode(claimed.path, claimed.frameCount);
      if (this.stopped) {
        // Cut short by shutdown: the next process checks it again.
        await this.rows.update({ id: claimed.id }, { decodeCheck: 'pending' });
        return;
      }
      await this.rows.update(
        { id: claimed.id },
        {
          decodeCheck: outcome.check,
          decodeFrames: outcome.frames,
          decodeErrors: outcome.errors,
          decodeCheckedAt: new Date(),
        },
      );
      if (outcome.check === 'failed') {
        this.logger.warn(
          { recordingId: claimed.id, errors: outcome.errors },
          'recording failed its decode check',
        );
      }
    }
  }

  /** Takes the oldest pending recording (or a stale `checking` one) for this process. */
  private async claim(): Promise<{ id: string; path: string; frameCount: number | null } | null> {
    const rows = await this.rows.query<
      Array<{ id: string; path: string; frame_count: number | null }>
    >(
      `UPDATE recordings SET decode_check = 'checking', decode_checked_at = now()
        WHERE id = (
          SELECT id FROM recordings
           WHERE status = 'ready' AND path IS NOT NULL
             AND (decode_check = 'pending'
               OR (decode_check = 'checking'
                   AND decode_checked_at < now() - make_interval(secs => $1)))
           ORDER BY ready_at
           LIMIT 1
           FOR UPDATE SKIP LOCKED)
        RETURNING id, path, frame_count`,
      [STALE_CHECK_MS / 1000],
    );
    // TypeORM returns [rows, count] for UPDATE … RETURNING on Postgres.
    const first = (Array.isArray(rows[0]) ? rows[0][0] : rows[0]) as
      { id: string; path: string; frame_count: number | null } | undefined;
    return first ? { id: first.id, path: first.path, frameCount: first.frame_count } : null;
  }

  /** One decode pass over the file in the background CPU class. */
  decode(path: string, expectedFrames: number | null): Promise<DecodeOutcome> {
    return new Promise((resolve) => {
      const child = spawn(
        this.ffprobePath,
        [
          '-v',
          'error',
          '-count_frames',
          '-select_streams',
          'v:0',
          '-show_entries',
          'stream=nb_read_frames',
          '-of',
          'csv=p=0',
          path,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      this.child = child;
      if (child.pid !== undefined) {
        setCpuClass(child.pid, 'background');
      }
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (stderr.length < MAX_ERRORS_CHARS) {
          stderr += d;
        }
      });
      child.on('error', (err) => {
        this.child = null;
        resolve({ check: 'failed', frames: null, errors: `ffprobe did not run: ${err.message}` });
      });
      child.on('close', (code) => {
        this.child = null;
        const frames = Number.parseInt(stdout.trim(), 10);
        const counted = Number.isFinite(frames) ? frames : null;
        const problems: string[] = [];
        if (stderr.trim()) {
          problems.push(stderr.trim());
        }
        if (code !== 0) {
          problems.push(`ffprobe exited with ${code}`);
        }
        if (counted !== expectedFrames) {
          problems.push(`decoded ${counted ?? 'no'} frames, the recording has ${expectedFrames}`);
        }
        resolve({
          check: problems.length === 0 ? 'passed' : 'failed',
          frames: counted,
          errors: problems.length === 0 ? null : problems.join('\n').slice(0, MAX_ERRORS_CHARS),
        });
      });
    });
  }
}
