/**
 * Holds memory shaped like the service's at load: `mb` MB of 1 MB buffers (frames, the MP4
 * writer's) and a million small objects (the service's heap is mostly those). Forking copies the
 * page tables of all of it, which is what the spawn and policy benchmarks measure against.
 * Returns what to keep referenced for as long as it should be held.
 */
export function holdServiceLikeHeap(mb: number): unknown[] {
  const held: unknown[] = [];
  for (let i = 0; i < mb; i++) {
    held.push(Buffer.alloc(1 << 20, i));
  }
  held.push(Array.from({ length: 1_000_000 }, (_, i) => ({ seq: i, tag: `frame-${i}` })));
  return held;
}
