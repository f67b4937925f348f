/** Total size in bytes of the regular files under `dir`: the emulated file system's use. */
export function usedBytes(dir: string): number;
/** Patches `fs` so that `dir` behaves as a file system of `capacity` bytes. */
export function install(options: { dir: string; capacity: number }): void;
/** Block size reported by the emulated statfs. */
export const BSIZE: number;
