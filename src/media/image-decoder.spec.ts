import { readdirSync, readFileSync } from 'node:fs';
import sharp from 'sharp';
import { jpegSize } from './frame-pipeline';
import { ImageDecodeError, ImageDecoderPool } from './image-decoder';

/** Decoder processes of this process: children running an inline script that loads sharp. */
function decoderPids(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return ppid === process.pid && cmdline.includes('sharp.concurrency(1)')
          ? [Number(pid)]
          : [];
      } catch {
        return [];
      }
    });
}

const png = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: { r: 10, g: 120, b: 30 } } })
    .png()
    .toBuffer();

const task = (input: Buffer) => ({
  input,
  width: 320,
  height: 240,
  maxInputPixels: 10_000_000,
  overlay: null,
  quality: 90,
});

describe('ImageDecoderPool', () => {
  let pool: ImageDecoderPool;

  beforeEach(() => {
    pool = new ImageDecoderPool(2);
  });

  afterEach(() => pool.close());

  it('converts images in a child process, one process for images one after the other', async () => {
    for (let i = 0; i < 3; i++) {
      expect(jpegSize((await pool.convert(task(await png(100 + i, 80)))).jpeg)).toEqual({
        width: 320,
        height: 240,
      });
    }
    expect(pool.processes).toBe(1);
    const pids = decoderPids();
    expect(pids).toHaveLength(1);
    // It reads client images: it gets none of the service's environment (secrets), only the
    // variables Node sets for the IPC channel.
    const environ = readFileSync(`/proc/${pids[0]}/environ`, 'utf8').split('\0').filter(Boolean);
    expect(environ.filter((v) => !v.startsWith('NODE_CHANNEL_'))).toEqual([]);
  });

  it('answers a bad image with ImageDecodeError and keeps its process', async () => {
    await expect(pool.convert(task(Buffer.from('garbage, not an image')))).rejects.toBeInstanceOf(
      ImageDecodeError,
    );
    const big = await png(4000, 3000);
    await expect(pool.convert(task(big))).rejects.toThrow(/pixel limit/);
    expect(pool.processes).toBe(1);
    const decoded = await pool.decodes(big, 20_000_000);
    expect(decoded.ok).toBe(true);
    // The CPU time of the decode, measured in the decoder process.
    expect(decoded.costMs).toBeGreaterThan(0);
    await expect(pool.decodes(big.subarray(0, 1000), 20_000_000)).resolves.toMatchObject({
      ok: false,
    });
  });

  it('fails only the image a dying decoder was working on; the next image gets a new process', async () => {
    const image = await png(200, 100);
    const doomed = pool.convert(task(image));
    const [pid] = decoderPids();
    process.kill(pid, 'SIGKILL');
    await expect(doomed).rejects.toThrow(/the decoder stopped \(SIGKILL\)/);
    expect(pool.processes).toBe(0);
    expect(jpegSize((await pool.convert(task(image))).jpeg)).toEqual({ width: 320, height: 240 });
    expect(decoderPids()).not.toContain(pid);
  });

  it('runs at most `size` processes, queueing beyond, and stops them all on close', async () => {
    const images = await Promise.all([1, 2, 3, 4].map((i) => png(100 * i, 100)));
    const outputs = await Promise.all(images.map((i) => pool.convert(task(i))));
    expect(outputs.every((o) => jpegSize(o.jpeg)?.width === 320)).toBe(true);
    expect(pool.processes).toBeLessThanOrEqual(2);
    pool.close();
    expect(pool.processes).toBe(0);
    await expect(pool.convert(task(images[0]))).rejects.toThrow('image decoder closed');
  });
});
