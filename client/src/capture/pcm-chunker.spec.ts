import { PcmChunker } from './pcm-chunker';

describe('PcmChunker', () => {
  it('cuts s16le chunks of a fixed frame count, across render quanta', () => {
    const chunks: { pcm: Int16Array; first: number }[] = [];
    const chunker = new PcmChunker(1, 200, (pcm, first) =>
      chunks.push({ pcm: new Int16Array(pcm), first }),
    );
    for (let q = 0; q < 4; q++) {
      chunker.push([Float32Array.from({ length: 128 }, (_, i) => ((q * 128 + i) % 3) - 1)]);
    }
    // 512 frames: two full chunks of 200, 112 held for the next.
    expect(chunks.map((c) => [c.first, c.pcm.length])).toEqual([
      [0, 200],
      [200, 200],
    ]);
    expect(Array.from(chunks[0].pcm.subarray(0, 4))).toEqual([-32768, 0, 32767, -32768]);
    expect(chunks[1].pcm[0]).toBe([-32768, 0, 32767][200 % 3]);
  });

  it('interleaves channels little-endian and clamps out-of-range samples', () => {
    const buffers: ArrayBuffer[] = [];
    const chunker = new PcmChunker(2, 2, (pcm) => buffers.push(pcm));
    chunker.push([Float32Array.of(0.5, 2), Float32Array.of(-0.5, -2)]);
    const view = new DataView(buffers[0]);
    expect([0, 2, 4, 6].map((o) => view.getInt16(o, true))).toEqual([16383, -16384, 32767, -32768]);
  });

  it('dates each chunk by the frame index it is given, across gaps in the input', () => {
    const chunks: [number, number][] = [];
    const chunker = new PcmChunker(1, 192, (pcm, first) =>
      chunks.push([first, pcm.byteLength / 2]),
    );
    const quantum = () => [new Float32Array(128)];
    chunker.push(quantum(), 1000);
    chunker.push(quantum(), 1128);
    // The source paused for 10 quanta: the chunk before the gap goes out short, the next one
    // starts where its frames really are.
    chunker.push([], 1256);
    chunker.push(quantum(), 2536);
    chunker.push(quantum(), 2664);
    expect(chunks).toEqual([
      [1000, 192],
      [1192, 64],
      [2536, 192],
    ]);
  });

  it('repeats a mono input into both channels of a stereo chunk', () => {
    const buffers: ArrayBuffer[] = [];
    const chunker = new PcmChunker(2, 1, (pcm) => buffers.push(pcm));
    chunker.push([Float32Array.of(1)]);
    expect(Array.from(new Int16Array(buffers[0]))).toEqual([32767, 32767]);
  });
});
