import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { statfs } from 'node:fs/promises';
import { resolve } from 'node:path';
import { APP_CONFIG, type AppConfig } from '../config/config';

/** Free space under DATA_DIR (spools, recordings, journal) stays above HEALTH_MIN_FREE_DISK_MB. */
@Injectable()
export class DiskHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async check(key: string) {
    const indicator = this.health.check(key);
    const path = resolve(this.config.DATA_DIR);
    try {
      const stats = await statfs(path);
      const freeMb = Math.floor((stats.bavail * stats.bsize) / (1024 * 1024));
      const details = { path, freeMb, minFreeMb: this.config.HEALTH_MIN_FREE_DISK_MB };
      return freeMb >= this.config.HEALTH_MIN_FREE_DISK_MB
        ? indicator.up(details)
        : indicator.down({ ...details, message: 'free disk space under DATA_DIR is too low' });
    } catch (err) {
      return indicator.down({ path, message: (err as Error).message });
    }
  }
}
