import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface ToolLocation {
  path: string;
  source: 'env' | 'system' | 'bundled';
}

/**
 * Where ffmpeg/ffprobe come from: the *_PATH variable, else the system's PATH, else the static
 * build shipped by @ffmpeg-installer / @ffprobe-installer.
 */
export function locateTool(
  tool: 'ffmpeg' | 'ffprobe',
  configured: string | undefined,
): ToolLocation {
  if (configured) {
    return { path: configured, source: 'env' };
  }
  const system = findOnPath(tool);
  if (system) {
    return { path: system, source: 'system' };
  }
  // Required only here: the installers throw at load time on a platform they ship no binary for.
  const bundled =
    tool === 'ffmpeg'
      ? // eslint-disable-next-line @typescript-eslint/no-require-imports
        (require('@ffmpeg-installer/ffmpeg') as { path: string }).path
      : // eslint-disable-next-line @typescript-eslint/no-require-imports
        (require('@ffprobe-installer/ffprobe') as { path: string }).path;
  return { path: bundled, source: 'bundled' };
}

/** The first executable named `name` in the directories of PATH, or null. */
export function findOnPath(name: string): string | null {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  return dirs.map((dir) => join(dir, name)).find(isExecutable) ?? null;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
