#!/usr/bin/env node
import { createReadStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Track } from '../../../src/protocol/media-header.js';
import { ClientError, type FramegateClient, type OpenSettings } from '../client.js';
import { jpegSize, MjpegSplitter } from '../mjpeg-splitter.js';
import { createNodeClient } from '../node.js';
import { H264ChunkReader, H264StreamError } from './h264-chunks.js';

const USAGE =
  'usage: framegate-push --url <base> (--token <jwt> | --ticket <t>) [--codec jpeg|h264] ' +
  '[--fps N] [--live] [--outbox <dir>] <input | ->\n' +
  '  jpeg (the default): a directory of JPEGs sent in name order (*.jpg, *.jpeg), or - for an\n' +
  '    MJPEG stream on stdin\n' +
  '  h264: an H.264 Annex B elementary stream, a file or - for stdin, sent as recorded (e.g.\n' +
  '    ffmpeg -re -i cam.mp4 -c:v libx264 -bf 0 -bsf:v h264_mp4toannexb -f h264 - | …), without\n' +
  '    B-frames (the server records chunks in capture order)\n' +
  '  --fps: frame n is at n × 1000/fps ms (default 10 for JPEG, 25 for H.264)\n' +
  '  --live: frames are timed by the wall clock as they arrive (a live pipe), not by --fps\n' +
  '  FRAMEGATE_TOKEN stands for --token (keeps the token out of the process list)';

/** EX_USAGE of sysexits.h: the command line was wrong. */
const EXIT_USAGE = 64;
const EXIT_FAILED = 1;

class UsageError extends Error {}

type Codec = 'jpeg' | 'h264';

interface Args {
  url: string;
  token?: string;
  ticket?: string;
  codec: Codec;
  fps: number;
  live: boolean;
  outbox?: string;
  input: string;
}

/** A frame read from the input: a JPEG, or an H.264 access unit in AVCC form. */
interface Frame {
  payload: Uint8Array;
  key: boolean;
}

/** The input: what `open` declares of its video, and its frames (the first one included). */
interface Source {
  video: Omit<OpenSettings['video'], 'fps'>;
  frames: AsyncGenerator<Frame>;
}

function parse(argv: string[]): Args {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      ticket: { type: 'string' },
      codec: { type: 'string' },
      fps: { type: 'string' },
      live: { type: 'boolean' },
      outbox: { type: 'string' },
    },
    allowPositionals: true,
  });
  const url = values.url;
  if (!url || !/^https?:\/\/[^/]+/.test(url)) {
    throw new UsageError('--url must be the http(s) base URL of the service');
  }
  const token = values.token ?? process.env.FRAMEGATE_TOKEN;
  if (!token === !values.ticket) {
    throw new UsageError('give exactly one of --token (or FRAMEGATE_TOKEN) and --ticket');
  }
  const codec = values.codec ?? 'jpeg';
  if (codec !== 'jpeg' && codec !== 'h264') {
    throw new UsageError('--codec must be jpeg or h264');
  }
  const fps = values.fps === undefined ? (codec === 'h264' ? 25 : 10) : Number(values.fps);
  if (!Number.isFinite(fps) || fps < 0.1 || fps > 120) {
    throw new UsageError('--fps must be a number from 0.1 to 120');
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      codec === 'h264'
        ? 'give one input: an H.264 Annex B file, or - for stdin'
        : 'give one input: a directory of JPEGs, or - for MJPEG on stdin',
    );
  }
  return {
    url,
    token: values.ticket ? undefined : token,
    ticket: values.ticket,
    codec,
    fps,
    live: values.live ?? false,
    outbox: values.outbox,
    input: positionals[0],
  };
}

/** The JPEGs of a directory, in name order, read one at a time. */
async function* directoryFrames(dir: string): AsyncGenerator<Buffer> {
  const names = (await readdir(dir)).filter((n) => /\.jpe?g$/i.test(n)).sort();
  for (const name of names) {
    yield await readFile(join(dir, name));
  }
}

/** The images of an MJPEG stream on stdin. */
async function* stdinFrames(): AsyncGenerator<Buffer> {
  const splitter = new MjpegSplitter();
  for await (const chunk of process.stdin) {
    yield* splitter.push(chunk as Buffer);
  }
  if (splitter.leftover > 0) {
    process.stderr.write(
      `framegate-push: ignored ${splitter.leftover} bytes of an unfinished image at the end\n`,
    );
  }
}

async function* prepend(first: Frame, rest: AsyncIterable<Frame>): AsyncGenerator<Frame> {
  yield first;
  yield* rest;
}

async function* asJpegFrames(images: AsyncIterable<Buffer>): AsyncGenerator<Frame> {
  for await (const payload of images) {
    yield { payload, key: false };
  }
}

async function jpegSource(input: string): Promise<Source> {
  const images = input === '-' ? stdinFrames() : directoryFrames(input);
  const first = await images.next();
  if (first.done) {
    throw new UsageError(`no JPEG in ${input === '-' ? 'the input' : input}`);
  }
  const size = jpegSize(first.value);
  if (!size) {
    throw new UsageError('the first image is not a JPEG with a size (no SOF segment)');
  }
  return {
    video: size,
    frames: prepend({ payload: first.value, key: false }, asJpegFrames(images)),
  };
}

/**
 * An H.264 Annex B stream as the chunks of one `avc1.*` session: its `open` is known once the
 * first IDR access unit with its SPS and PPS was read.
 */
async function h264Source(input: string, log: (line: string) => void): Promise<Source> {
  const reader = new H264ChunkReader();
  const pieces: AsyncIterable<Buffer> = input === '-' ? process.stdin : createReadStream(input);
  async function* chunks(): AsyncGenerator<Frame> {
    for await (const piece of pieces) {
      for (const chunk of reader.push(piece)) {
        yield { payload: chunk.data, key: chunk.key };
      }
      if (reader.error) {
        throw reader.error;
      }
    }
    for (const chunk of reader.end()) {
      yield { payload: chunk.data, key: chunk.key };
    }
    if (reader.error) {
      throw reader.error;
    }
  }
  const frames = chunks();
  const first = await frames.next();
  if (first.done || !reader.info) {
    throw new UsageError(
      `no IDR access unit with its SPS and PPS in ${input === '-' ? 'the input' : input}`,
    );
  }
  if (reader.skipped > 0) {
    log(`skipped ${reader.skipped} access units before the first IDR (they cannot be decoded)`);
  }
  const { codec, description, width, height } = reader.info;
  return {
    video: { codec, description: Buffer.from(description).toString('base64'), width, height },
    frames: prepend(first.value, frames),
  };
}

async function push(args: Args): Promise<number> {
  const log = (line: string) => process.stderr.write(`framegate-push: ${line}\n`);
  const source =
    args.codec === 'h264' ? await h264Source(args.input, log) : await jpegSource(args.input);
  const client: FramegateClient = createNodeClient({
    url: args.url,
    token: args.token,
    ticket: args.ticket,
    outboxDir: args.outbox,
  });
  client.on('reconnecting', (r) =>
    log(`reconnecting (attempt ${r.attempt}, in ${r.delayMs} ms): ${r.cause}`),
  );
  client.on('transport', (t) => log(`transport: ${t}`));
  client.on('flow', (f) => log(`flow: at most ${f.maxFps} frames/s (${f.reason})`));
  client.on('serverError', (e) =>
    log(`server error ${e.code}${e.seq ? ` for seq ${e.seq}` : ''}: ${e.message}`),
  );
  // A file or a pipe cannot make a key frame on request: its next IDR answers.
  client.on('keyframe', (reason) => log(`the server asks for a key frame (${reason})`));
  const progress = setInterval(() => {
    const s = client.stats();
    log(
      `sent ${s.nextSeq - 1}, acked ${s.ackedSeq}, ${s.fps} frames/s, ${s.transport}, ` +
        `outbox ${s.outboxDepth}`,
    );
  }, 1000);
  const stop = () => {
    clearInterval(progress);
    // With --outbox, what is not acknowledged stays there for the next run.
    void client.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  try {
    const opened = await client.open({
      params: { source: 'framegate-push' },
      video: { ...source.video, fps: args.fps },
    });
    // A run resuming an outbox continues the same input after the frames the last run took; a
    // live pipe has moved on meanwhile, so all it sends now is new.
    const taken = args.live ? 0 : client.stats().nextSeq - 1;
    if (opened.resumed) {
      log(`resumed session ${opened.sessionId}: ${client.stats().nextSeq - 1} frames taken before`);
    }
    const origin = client.clockOrigin() ?? Date.now();
    let count = 0;
    let lastPts = -1;
    let streamError: H264StreamError | null = null;
    try {
      for await (const frame of source.frames) {
        count++;
        if (count <= taken) {
          continue;
        }
        // Live: the time the frame arrived (rising, two frames of one millisecond apart).
        const pts = args.live
          ? Math.max(lastPts + 1, Date.now() - origin)
          : Math.round(((count - 1) * 1000) / args.fps);
        lastPts = pts;
        await client.send(frame.payload, Track.Video, pts, frame.key);
      }
    } catch (err) {
      if (!(err instanceof H264StreamError)) {
        throw err;
      }
      // What was sent is one valid recording: close it, then say why the rest was not sent.
      streamError = err;
    }
    const closed = await client.close();
    const stats = client.stats();
    process.stdout.write(
      `${JSON.stringify({
        sessionId: closed.sessionId,
        frames: closed.frames,
        recording: {
          id: closed.recording.id,
          status: closed.recording.status,
          durationMs: closed.recording.durationMs,
        },
      })}\n`,
    );
    if (streamError) {
      log(`error ${streamError.code}: ${streamError.message}`);
      return EXIT_FAILED;
    }
    const sent = args.live ? stats.nextSeq - 1 : count;
    if (stats.ackedSeq !== sent || closed.frames !== sent) {
      log(`error incomplete: ${sent} frames read, ${stats.ackedSeq} acknowledged`);
      return EXIT_FAILED;
    }
    if (stats.refusedFrames > 0) {
      log(`error refused: the server refused ${stats.refusedFrames} chunks (bad_frame)`);
      return EXIT_FAILED;
    }
    if (closed.recording.status !== 'ready') {
      log(`error recording_${closed.recording.status}: ${closed.recording.reason ?? ''}`);
      return EXIT_FAILED;
    }
    return 0;
  } finally {
    clearInterval(progress);
    process.off('SIGINT', stop);
  }
}

Promise.resolve()
  .then(() => push(parse(process.argv.slice(2))))
  .then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE')) {
        process.stderr.write(`framegate-push: ${(err as Error).message}\n${USAGE}\n`);
        process.exitCode = EXIT_USAGE;
      } else if (err instanceof ClientError) {
        process.stderr.write(`framegate-push: error ${err.code}: ${err.message}\n`);
        process.exitCode = EXIT_FAILED;
      } else {
        process.stderr.write(`framegate-push: error ${String(err)}\n`);
        process.exitCode = EXIT_FAILED;
      }
    },
  );
