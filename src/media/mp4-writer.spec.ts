import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HashedFileSink } from './mp4-writer';

describe('HashedFileSink', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'framegate-mp4-sink-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finishes a chunk a filling file system writes only in part, so the file has no gap and its hash is its bytes', async () => {
    const path = join(dir, 'short.mp4');
    const file = await open(path, 'w');
    // At most 1000 bytes per call, reported without an error, as a nearly full disk may do.
    const write = file.write.bind(file) as (
      b: Uint8Array,
      o: number,
      l: number,
      p: number,
    ) => Promise<{ bytesWritten: number }>;
    Object.assign(file, {
      write: (b: Uint8Array, o: number, l: number, p: number) => write(b, o, Math.min(l, 1000), p),
    });
    const sink = new HashedFileSink(file);
    const chunks = [randomBytes(5000), randomBytes(1), randomBytes(2500)];
    let position = 0;
    for (const data of chunks) {
      await sink.write({ type: 'write', data, position });
      position += data.length;
    }
    await sink.close();

    const written = readFileSync(path);
    expect(written.equals(Buffer.concat(chunks))).toBe(true);
    expect(sink.bytes).toBe(7501);
    expect(sink.digest()).toBe(createHash('sha256').update(written).digest('hex'));
  });
});
