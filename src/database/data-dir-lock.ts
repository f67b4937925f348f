import { mkdirSync, openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Raised when another live framegate process owns the data directory. */
export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(
      `DATA_DIR ${dataDir} is in use by another framegate process (pid ${pid}); ` +
        'stop it or start this one with another DATA_DIR',
    );
    this.name = 'DataDirInUseError';
  }
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * An exclusive, pid-stamped lock on DATA_DIR. The embedded database, spools and journals under it
 * belong to one process at a time; a lock left by a dead process is taken over.
 */
export class DataDirLock {
  private released = false;

  private constructor(readonly file: string) {}

  static acquire(dataDir: string): DataDirLock {
    const dir = resolve(dataDir);
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'framegate.lock');
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = openSync(file, 'wx', 0o644);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return new DataDirLock(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw err;
        }
      }
      const owner = readOwner(file);
      if (owner !== undefined && owner !== process.pid && isProcessAlive(owner)) {
        throw new DataDirInUseError(dir, owner);
      }
      try {
        unlinkSync(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw err;
        }
      }
    }
    throw new Error(`could not lock ${file}`);
  }

  release(): void {
    if (this.released) {
      return;
    }
    this.released = true;
    if (readOwner(this.file) === process.pid) {
      unlinkSync(this.file);
    }
  }
}

function readOwner(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
