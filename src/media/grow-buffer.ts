/**
 * Appends `chunk` after the first `length` bytes of `buf`, growing it by doubling when full;
 * returns the buffer to keep (the same one unless it grew). The stream splitters accumulate
 * ffmpeg's output this way: one copy per chunk, amortised O(1) growth.
 */
export function appendGrowing(buf: Buffer, length: number, chunk: Buffer): Buffer {
  const needed = length + chunk.length;
  let target = buf;
  if (needed > buf.length) {
    let capacity = Math.max(1, buf.length) * 2;
    while (capacity < needed) {
      capacity *= 2;
    }
    target = Buffer.allocUnsafe(capacity);
    buf.copy(target, 0, 0, length);
  }
  chunk.copy(target, length);
  return target;
}
