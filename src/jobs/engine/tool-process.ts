import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { type CpuClass, setCpuClass } from '../../media/cpu-class';
import { FFMPEG_SPAWNS } from '../../media/spawn-pacer';
import { JobCancelledError } from './errors';

/** Tail of a tool's stderr kept for error messages. */
const STDERR_TAIL_CHARS = 4096;
/** Lines of that tail quoted in an error message. */
const STDERR_LINES = 4;
/** After SIGTERM, a tool that is still there this much later gets SIGKILL. */
export const KILL_GRACE_MS = 1000;

export interface ToolRun {
  /** The binary (ffmpeg, ffprobe, node). */
  command: string;
  args: string[];
  /** The job's folder: the tool's working directory, so every path it is given is relative. */
  cwd: string;
  signal: AbortSignal;
  cpuClass: CpuClass;
  /** Names the run in error messages: `ffmpeg (transcode)`. */
  label: string;
  /** Keep stdout (up to this many bytes; more fails the run); by default it is discarded. */
  stdoutLimit?: number;
  /** Writes the tool's stdin, honouring backpressure; stdin is closed when it settles. */
  feed?: (stdin: Writable) => Promise<void>;
  /** Each complete line the tool writes on fd 3 (`-progress pipe:3`). */
  onFd3Line?: (line: string) => void;
}

/** A tool that ran and failed: exit status, signal and the end of what it printed on stderr. */
export class ToolFailure extends Error {
  constructor(
    readonly label: string,
    readonly exitCode: number | null,
    readonly exitSignal: NodeJS.Signals | null,
    readonly stderrTail: string,
  ) {
    super(
      `${label} ${exitSignal ? `died of ${exitSignal}` : `exited with code ${exitCode}`}` +
        (stderrTail ? `: ${stderrTail}` : ''),
    );
    this.name = 'ToolFailure';
  }
}

/**
 * Runs one tool to its end. It starts through the service's spawn pacer (process starts are
 * spaced so a burst never stalls the event loop), moves to `cpuClass` as soon as it has a pid,
 * and gets no environment (it reads untrusted input; the service's secrets stay out of it).
 *
 * The signal cancels: a start still waiting for its turn never happens; a running tool gets
 * SIGTERM, then SIGKILL after KILL_GRACE_MS; either way the run rejects with JobCancelledError
 * once the process is gone. Resolves with stdout (when kept) after an exit status of 0; rejects
 * with ToolFailure for any other end, with the spawn error when it could not start.
 */
export function runTool(run: ToolRun): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    if (run.signal.aborted) {
      reject(new JobCancelledError());
      return;
    }
    const onAbortBeforeStart = (): void => {
      withdraw();
      reject(new JobCancelledError());
    };
    run.signal.addEventListener('abort', onAbortBeforeStart, { once: true });
    const withdraw = FFMPEG_SPAWNS.schedule(() => {
      run.signal.removeEventListener('abort', onAbortBeforeStart);
      if (run.signal.aborted) {
        reject(new JobCancelledError());
        return;
      }
      start(run, resolve, reject);
    });
  });
}

function start(
  run: ToolRun,
  resolve: (stdout: string) => void,
  reject: (err: Error) => void,
): void {
  const child = spawn(run.command, run.args, {
    cwd: run.cwd,
    env: {},
    stdio: [run.feed ? 'pipe' : 'ignore', 'pipe', 'pipe', run.onFd3Line ? 'pipe' : 'ignore'],
  });
  if (child.pid !== undefined && run.cpuClass !== 'normal') {
    setCpuClass(child.pid, run.cpuClass);
  }
  let stderr = '';
  let stdout = '';
  let stdoutBytes = 0;
  let overflow = false;
  let cancelled = false;
  let killTimer: NodeJS.Timeout | undefined;

  const onAbort = (): void => {
    cancelled = true;
    child.kill('SIGTERM');
    killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
  };
  run.signal.addEventListener('abort', onAbort, { once: true });

  // Piped above: never null.
  const childStderr = child.stderr as Readable;
  const childStdout = child.stdout as Readable;
  childStderr.setEncoding('utf8');
  childStderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL_CHARS);
  });
  childStdout.on('data', (chunk: Buffer) => {
    if (run.stdoutLimit === undefined || overflow) {
      return;
    }
    stdoutBytes += chunk.length;
    if (stdoutBytes > run.stdoutLimit) {
      overflow = true;
      child.kill('SIGKILL');
      return;
    }
    stdout += chunk.toString('utf8');
  });
  const fd3 = child.stdio[3] as NodeJS.ReadableStream | null;
  if (fd3 && run.onFd3Line) {
    const onLine = run.onFd3Line;
    let partial = '';
    fd3.setEncoding('utf8');
    fd3.on('data', (text: string) => {
      const lines = (partial + text).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        onLine(line.trim());
      }
    });
  }
  let feedError: Error | null = null;
  if (run.feed && child.stdin) {
    const stdin = child.stdin;
    // EPIPE once the tool has exited: its exit status says why.
    stdin.on('error', () => undefined);
    run.feed(stdin).then(
      () => stdin.end(),
      (err: unknown) => {
        // The feeder could not read its input (a file vanished, EMFILE): the run fails with that.
        feedError = err instanceof Error ? err : new Error(String(err));
        child.kill('SIGKILL');
      },
    );
  }

  child.on('error', (err) => {
    run.signal.removeEventListener('abort', onAbort);
    clearTimeout(killTimer);
    reject(err);
  });
  child.on('close', (code, signal) => {
    run.signal.removeEventListener('abort', onAbort);
    clearTimeout(killTimer);
    if (cancelled) {
      reject(new JobCancelledError());
    } else if (feedError) {
      reject(feedError);
    } else if (overflow) {
      reject(new Error(`${run.label} wrote more than ${run.stdoutLimit} bytes on stdout`));
    } else if (code === 0) {
      resolve(stdout);
    } else {
      reject(new ToolFailure(run.label, code, signal, tail(stderr)));
    }
  });
}

function tail(stderr: string): string {
  return stderr
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .slice(-STDERR_LINES)
    .join(' | ');
}
