import { type ChildProcess, spawn } from 'node:child_process';
import { setPriority } from 'node:os';
import type { Costed } from './image-work';

/** One client image to turn into a recording frame. */
export interface ConvertTask {
  input: Buffer;
  /** Output size: the image is scaled to fit, aspect kept, black padding. */
  width: number;
  height: number;
  /** The decoder refuses images with more pixels than this, whatever their header said. */
  maxInputPixels: number;
  /** An image (SVG) drawn over the top-left corner, or null. */
  overlay: Buffer | null;
  /** JPEG quality of the output. */
  quality: number;
}

/**
 * The image could not be decoded (or the decoder gave up on it): a bad frame, not a fault.
 * `costMs`: the CPU time the decoder spent on it, when it said (see `Costed`).
 */
export class ImageDecodeError extends Error implements Partial<Costed> {
  constructor(
    message: string,
    readonly costMs?: number,
  ) {
    super(message);
    this.name = 'ImageDecodeError';
  }
}

/** What the recorder needs of the image decoder. Each answer carries the CPU time it took. */
export interface ImageDecoder {
  /** A JPEG of exactly `width`×`height`; rejects with ImageDecodeError for a bad image. */
  convert(task: ConvertTask): Promise<{ jpeg: Buffer } & Costed>;
  /** Whether the whole JPEG decodes (ffmpeg will read it). */
  decodes(jpeg: Buffer, maxInputPixels: number): Promise<{ ok: boolean } & Costed>;
  close(): void;
}

/**
 * A decoder process gives up on an image after this long: killed, the frame refused. Far above
 * what any image within the pixel limits costs (a 6000×6000 PNG takes about 0.3 s).
 */
/** Niceness of decoder processes: below the service and Postgres, above background encoders. */
const DECODER_NICENESS = 10;

const DECODE_TIMEOUT_MS = 20_000;
/** An idle decoder process exits after this, giving its memory back. */
const IDLE_EXIT_MS = 10_000;
/**
 * A decoder process whose resident memory grew past this after an image is replaced: libvips and
 * glibc keep freed memory in their arenas (about 120 MB more after 6000×6000 PNGs, never given
 * back), and a fresh process starts at about 60 MB.
 */
const RECYCLE_RSS_BYTES = 192 * 1024 * 1024;

/**
 * The decoder process: sharp, one libvips thread, no operation cache (nothing is decoded twice),
 * one message per image. Inline, so the same code runs from the TypeScript sources and the build.
 */
const DECODER_SCRIPT = `
const sharp = require(process.argv[1]);
sharp.cache(false);
sharp.concurrency(1);
process.on('disconnect', () => process.exit(0));
process.on('message', async (m) => {
  const reply = { id: m.id, ok: true, output: null, error: null, rss: 0, cpuMs: 0 };
  const cpu = process.cpuUsage();
  try {
    let p = sharp(m.input, { limitInputPixels: m.maxInputPixels, failOn: 'error' });
    if (m.op === 'decodes') {
      await p.raw().toBuffer();
    } else {
      p = p.resize(m.width, m.height, {
        fit: 'contain',
        background: { r: 0, g: 0, b: 0 },
        kernel: 'lanczos3',
      });
      if (m.overlay) {
        p = p.composite([{ input: m.overlay, top: 0, left: 0 }]);
      }
      reply.output = await p.jpeg({ quality: m.quality, chromaSubsampling: '4:2:0' }).toBuffer();
    }
  } catch (err) {
    reply.ok = false;
    reply.error = String((err && err.message) || err);
  }
  const spent = process.cpuUsage(cpu);
  reply.cpuMs = (spent.user + spent.system) / 1000;
  reply.rss = process.memoryUsage.rss();
  process.send(reply);
});
`;

interface Reply {
  id: number;
  ok: boolean;
  output: Buffer | null;
  error: string | null;
  rss: number;
  /** CPU time the decoder process spent on the image (its own thread and libvips' one). */
  cpuMs: number;
}

interface Task {
  message: Record<string, unknown>;
  resolve(reply: Reply): void;
  reject(err: Error): void;
}

/** One decoder process and the task it is working on. */
interface Worker {
  child: ChildProcess;
  task: Task | null;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Client images are decoded in child processes, never in the service's own: decoding (libvips)
 * runs on the process's libuv thread pool, which the spool's writes and fdatasyncs need for timely
 * acks; a costly image takes CPU and memory that a separate process gives back when it exits; and
 * an image that crashes or hangs the decoder costs that frame only. At most `size` processes, one
 * image each at a time (the node's ImageWork runs no more jobs than that); started on demand,
 * gone after IDLE_EXIT_MS without work.
 */
export class ImageDecoderPool implements ImageDecoder {
  private readonly workers = new Set<Worker>();
  private readonly queue: Task[] = [];
  private nextId = 1;
  private closed = false;
  private readonly sharpEntry = require.resolve('sharp');

  constructor(readonly size: number) {}

  /** Decoder processes running now. */
  get processes(): number {
    return this.workers.size;
  }

  async convert(task: ConvertTask): Promise<{ jpeg: Buffer } & Costed> {
    const reply = await this.submit({ op: 'convert', ...task });
    if (!reply.ok || !reply.output) {
      throw new ImageDecodeError(
        `image cannot be decoded: ${reply.error ?? 'no output'}`,
        reply.cpuMs,
      );
    }
    return { jpeg: reply.output, costMs: reply.cpuMs };
  }

  async decodes(jpeg: Buffer, maxInputPixels: number): Promise<{ ok: boolean } & Costed> {
    try {
      const reply = await this.submit({ op: 'decodes', input: jpeg, maxInputPixels });
      return { ok: reply.ok, costMs: reply.cpuMs };
    } catch (err) {
      if (err instanceof ImageDecodeError) {
        return { ok: false, costMs: err.costMs ?? 0 };
      }
      throw err;
    }
  }

  /** Stops every decoder process; tasks not done are refused. */
  close(): void {
    this.closed = true;
    for (const task of this.queue.splice(0)) {
      task.reject(new Error('image decoder closed'));
    }
    for (const worker of this.workers) {
      this.stopWorker(worker, new Error('image decoder closed'));
    }
  }

  private submit(message: Record<string, unknown>): Promise<Reply> {
    if (this.closed) {
      return Promise.reject(new Error('image decoder closed'));
    }
    return new Promise<Reply>((resolve, reject) => {
      this.queue.push({ message: { ...message, id: this.nextId++ }, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let worker: Worker | null = null;
      for (const w of this.workers) {
        if (w.task === null) {
          worker = w;
          break;
        }
      }
      if (!worker && this.workers.size < this.size) {
        worker = this.startWorker();
      }
      if (!worker) {
        return;
      }
      const task = this.queue.shift() as Task;
      this.give(worker, task);
    }
  }

  private startWorker(): Worker {
    const child = spawn(process.execPath, ['-e', DECODER_SCRIPT, this.sharpEntry], {
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      serialization: 'advanced',
      // It reads client images: none of the service's secrets (database, keys) in its environment.
      env: {},
    });
    if (child.pid !== undefined) {
      // Recording work, never on the ack path: under load the service (spool, acks) and the
      // database come first. CPU time, not wall time, is what the budget charges, so a slower
      // decoder costs no session any of its budget.
      try {
        setPriority(child.pid, DECODER_NICENESS);
      } catch {
        // Best effort: the decoder runs at the service's priority.
      }
    }
    const worker: Worker = { child, task: null, timer: undefined };
    this.workers.add(worker);
    child.on('message', (reply: Reply) => this.replied(worker, reply));
    child.on('error', (err) => this.stopWorker(worker, new ImageDecodeError(err.message)));
    child.on('exit', (code, signal) =>
      this.stopWorker(
        worker,
        new ImageDecodeError(`image cannot be decoded: the decoder stopped (${signal ?? code})`),
      ),
    );
    return worker;
  }

  private give(worker: Worker, task: Task): void {
    clearTimeout(worker.timer);
    worker.task = task;
    worker.timer = setTimeout(() => {
      this.stopWorker(
        worker,
        new ImageDecodeError(`image cannot be decoded within ${DECODE_TIMEOUT_MS / 1000} s`),
      );
    }, DECODE_TIMEOUT_MS);
    worker.child.send(task.message, (err) => {
      if (err) {
        this.stopWorker(worker, new ImageDecodeError(`image decoder unreachable: ${err.message}`));
      }
    });
  }

  private replied(worker: Worker, reply: Reply): void {
    const task = worker.task;
    if (!task || reply.id !== task.message.id) {
      return;
    }
    worker.task = null;
    clearTimeout(worker.timer);
    task.resolve(reply);
    if (reply.rss > RECYCLE_RSS_BYTES) {
      this.stopWorker(worker, null);
    } else {
      worker.timer = setTimeout(() => this.stopWorker(worker, null), IDLE_EXIT_MS);
      worker.timer.unref();
    }
    this.dispatch();
  }

  /** Ends a decoder process; its task, if any, fails with `err`. Idempotent. */
  private stopWorker(worker: Worker, err: Error | null): void {
    if (!this.workers.delete(worker)) {
      return;
    }
    clearTimeout(worker.timer);
    worker.child.kill('SIGKILL');
    const task = worker.task;
    worker.task = null;
    if (task) {
      task.reject(err ?? new ImageDecodeError('image decoder stopped'));
    }
    this.dispatch();
  }
}
