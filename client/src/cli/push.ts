#!/usr/bin/env node
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Track } from '../../../src/protocol/media-header.js';
import { ClientError, type FramegateClient } from '../client.js';
import { jpegSize, MjpegSplitter } from '../mjpeg-splitter.js';
import { createNodeClient } from '../node.js';

const USAGE =
  'usage: framegate-push --url <base> (--token <jwt> | --ticket <t>) [--fps N] [--outbox <dir>] ' +
  '<dir-of-jpegs | ->\n' +
  '  a directory is sent in name order (*.jpg, *.jpeg); - reads an MJPEG stream on stdin\n' +
  '  FRAMEGATE_TOKEN stands for --token (keeps the token out of the process list)';

/** EX_USAGE of sysexits.h: the command line was wrong. */
const EXIT_USAGE = 64;
const EXIT_FAILED = 1;

class UsageError extends Error {}

interface Args {
  url: string;
  token?: string;
  ticket?: string;
  fps: number;
  outbox?: string;
  input: string;
}

function parse(argv: string[]): Args {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      ticket: { type: 'string' },
      fps: { type: 'string' },
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
  const fps = values.fps === undefined ? 10 : Number(values.fps);
  if (!Number.isFinite(fps) || fps < 0.1 || fps > 120) {
    throw new UsageError('--fps must be a number from 0.1 to 120');
  }
  if (positionals.length !== 1) {
    throw new UsageError('give one input: a directory of JPEGs, or - for MJPEG on stdin');
  }
  return {
    url,
    token: values.ticket ? undefined : token,
    ticket: values.ticket,
    fps,
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

async function push(args: Args): Promise<number> {
  const frames = args.input === '-' ? stdinFrames() : directoryFrames(args.input);
  const first = await frames.next();
  if (first.done) {
    throw new UsageError(`no JPEG in ${args.input === '-' ? 'the input' : args.input}`);
  }
  const size = jpegSize(first.value);
  if (!size) {
    throw new UsageError('the first image is not a JPEG with a size (no SOF segment)');
  }
  const client: FramegateClient = createNodeClient({
    url: args.url,
    token: args.token,
    ticket: args.ticket,
    outboxDir: args.outbox,
  });
  const log = (line: string) => process.stderr.write(`framegate-push: ${line}\n`);
  client.on('reconnecting', (r) =>
    log(`reconnecting (attempt ${r.attempt}, in ${r.delayMs} ms): ${r.cause}`),
  );
  client.on('transport', (t) => log(`transport: ${t}`));
  client.on('flow', (f) => log(`flow: at most ${f.maxFps} frames/s (${f.reason})`));
  client.on('serverError', (e) =>
    log(`server error ${e.code}${e.seq ? ` for seq ${e.seq}` : ''}: ${e.message}`),
  );
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
      video: { ...size, fps: args.fps },
    });
    // A run resuming an outbox continues the same input after the frames the last run took.
    const taken = client.stats().nextSeq - 1;
    if (opened.resumed) {
      log(`resumed session ${opened.sessionId}: ${taken} frames taken before`);
    }
    let count = 0;
    const send = async (frame: Buffer) => {
      count++;
      if (count > taken) {
        await client.send(frame, Track.Video, Math.round(((count - 1) * 1000) / args.fps));
      }
    };
    await send(first.value);
    for await (const frame of frames) {
      await send(frame);
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
    if (stats.ackedSeq !== count || closed.frames !== count) {
      log(`error incomplete: ${count} frames read, ${stats.ackedSeq} acknowledged`);
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
