import { Inject, Injectable } from '@nestjs/common';
import { statfs } from 'node:fs/promises';
import { resolve } from 'node:path';
import { APP_CONFIG, type AppConfig, recordingsDirOf, spoolDirOf } from '../config/config';

/** How long one statfs answer is reused: a handshake storm costs one syscall per this period. */
const CACHE_MS = 500;

/** A write that failed because the file system (or the user's quota) is full. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return (
    code === 'ENOSPC' ||
    code === 'EDQUOT' ||
    (err instanceof Error && /\bENOSPC\b|no space left on device/i.test(err.message))
  );
}

/**
 * Free space where spools and recordings grow (DATA_DIR, SPOOL_DIR, RECORDINGS_DIR: the least of
 * them). Below HEALTH_MIN_FREE_DISK_MB the node takes no new sessions: what it has would otherwise
 * fill the rest and fail mid-stream.
 */
@Injectable()
export class FreeSpace {
  private readonly paths: string[];
  private readonly minBytes: number;
  private cached: { at: number; freeBytes: number } | null = null;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.paths = [
      ...new Set([resolve(config.DATA_DIR), spoolDirOf(config), recordingsDirOf(config)]),
    ];
    this.minBytes = config.HEALTH_MIN_FREE_DISK_MB * 1024 * 1024;
  }

  /** Bytes an unprivileged writer may still use in the fullest of those directories. */
  async freeBytes(): Promise<number> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < CACHE_MS) {
      return this.cached.freeBytes;
    }
    const all = await Promise.all(this.paths.map((path) => statfs(path)));
    const freeBytes = Math.min(...all.map((stats) => stats.bavail * stats.bsize));
    this.cached = { at: now, freeBytes };
    return freeBytes;
  }

  /** True while free space is below HEALTH_MIN_FREE_DISK_MB. */
  async low(): Promise<boolean> {
    return (await this.freeBytes()) < this.minBytes;
  }

  /** Forgets the cached answer (a write just failed with ENOSPC). */
  invalidate(): void {
    this.cached = null;
  }
}
