import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { execFile } from 'node:child_process';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { locateTool, type ToolLocation } from '../media/ffmpeg-locator';

interface FfmpegProbe {
  ok: boolean;
  path: string;
  source: ToolLocation['source'];
  version?: string;
  libx264?: boolean;
  aac?: boolean;
  error?: string;
  at: number;
}

const RECHECK_MS = 60_000;

/** ffmpeg runs and has the encoders recordings need; re-checked at most once a minute. */
@Injectable()
export class FfmpegHealthIndicator {
  private last: FfmpegProbe | undefined;

  constructor(
    private readonly health: HealthIndicatorService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async check(key: string) {
    const indicator = this.health.check(key);
    if (!this.last || Date.now() - this.last.at > RECHECK_MS) {
      this.last = await this.probe();
    }
    const { ok, at: _at, ...details } = this.last;
    return ok ? indicator.up(details) : indicator.down(details);
  }

  private probe(): Promise<FfmpegProbe> {
    const tool = locateTool('ffmpeg', this.config.FFMPEG_PATH);
    return new Promise((resolve) => {
      execFile(tool.path, ['-hide_banner', '-encoders'], { timeout: 10_000 }, (err, stdout) => {
        if (err) {
          resolve({ ok: false, ...tool, error: err.message, at: Date.now() });
          return;
        }
        execFile(tool.path, ['-version'], { timeout: 10_000 }, (verErr, verOut) => {
          const version = verErr ? undefined : /ffmpeg version (\S+)/.exec(verOut)?.[1];
          resolve({
            ok: true,
            ...tool,
            version,
            libx264: /\slibx264\s/.test(stdout),
            aac: /\saac\s/.test(stdout),
            at: Date.now(),
          });
        });
      });
    });
  }
}
