import { encodeH264, probePackets } from '../../../test/support/bitstreams';
import {
  annexBToAvcc,
  avcCFromParameterSets,
  avcCodecString,
  NalType,
  nalUnitType,
  splitAnnexBAccessUnits,
} from '../../../src/protocol/annexb';
import { H264ChunkReader, H264StreamError, type H264Chunk } from './h264-chunks';

/** Feeds `stream` in pieces of `size` bytes; returns every chunk. */
function readAll(reader: H264ChunkReader, stream: Buffer, size: number): H264Chunk[] {
  const chunks: H264Chunk[] = [];
  for (let at = 0; at < stream.length; at += size) {
    chunks.push(...reader.push(stream.subarray(at, at + size)));
  }
  chunks.push(...reader.end());
  return chunks;
}

const START = Buffer.from([0, 0, 0, 1]);
const annexB = (aus: Uint8Array[][]) =>
  Buffer.concat(aus.flatMap((au) => au.flatMap((nal) => [START, Buffer.from(nal)])));

describe('H264ChunkReader', () => {
  it('gives one AVCC chunk per access unit, IDR ones key, and the avcC of the first parameter sets', async () => {
    const stream = await encodeH264({ width: 320, height: 240, frames: 30, gop: 10 });
    const reader = new H264ChunkReader();
    const chunks = readAll(reader, stream, 997);
    const packets = await probePackets('h264', stream);
    expect(chunks.map((c) => c.key)).toEqual(packets.map((p) => p.key));
    expect(chunks.filter((c) => c.key)).toHaveLength(3);
    const aus = splitAnnexBAccessUnits(stream);
    expect(chunks.every((c, i) => Buffer.from(c.data).equals(annexBToAvcc(aus[i])))).toBe(true);
    const sps = aus[0].filter((nal) => nalUnitType(nal) === NalType.Sps);
    const pps = aus[0].filter((nal) => nalUnitType(nal) === NalType.Pps);
    // libx264's High profile (100 = 0x64) for 4:2:0.
    expect(reader.info).toMatchObject({ codec: avcCodecString(sps[0]), width: 320, height: 240 });
    expect(reader.info?.codec).toMatch(/^avc1\.64/);
    expect(Buffer.from(reader.info!.description).equals(avcCFromParameterSets(sps, pps))).toBe(
      true,
    );
    expect(reader.skipped).toBe(0);
  });

  it('skips the access units before the first IDR (a stream joined mid-GOP)', async () => {
    const aus = splitAnnexBAccessUnits(
      await encodeH264({ width: 320, height: 240, frames: 20, gop: 10 }),
    );
    const reader = new H264ChunkReader();
    const chunks = readAll(reader, annexB(aus.slice(3)), 4096);
    expect(reader.skipped).toBe(7);
    expect(chunks).toHaveLength(10);
    expect(chunks[0].key).toBe(true);
  });

  it('refuses a stream whose SPS changes, at the access unit that changes it', async () => {
    const first = await encodeH264({ width: 320, height: 240, frames: 10, gop: 10 });
    const second = await encodeH264({ width: 640, height: 480, frames: 10, gop: 10 });
    const reader = new H264ChunkReader();
    // In one piece: the chunks before the change are handed out all the same.
    const taken = readAll(reader, Buffer.concat([first, second]), 1 << 20);
    expect(reader.error).toBeInstanceOf(H264StreamError);
    expect(reader.error?.code).toBe('stream_changed');
    expect(reader.error?.message).toMatch(/^access unit 11 carries a new SPS/);
    expect(reader.push(second)).toEqual([]);
    expect(taken).toHaveLength(10);
  });

  it('refuses B slices (the server records chunks in capture order), handing out the chunks before', async () => {
    const stream = await encodeH264({ width: 320, height: 240, frames: 20, gop: 10 }, ['-bf', '2']);
    const reader = new H264ChunkReader();
    const taken = readAll(reader, stream, 4096);
    expect(reader.error).toMatchObject({ code: 'b_frames' });
    const [, at] = /^access unit (\d+) holds a B slice/.exec(reader.error!.message)!;
    expect(taken).toHaveLength(Number(at) - 1);
    expect(Number(at)).toBeGreaterThan(1);
  });
});
