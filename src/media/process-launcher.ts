import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';

/** A started process's pid and pipes, as the caller gets them. */
export interface LaunchedPipes {
  pid: number;
  stdin: Writable;
  stdout: Readable;
  stderr: Readable;
}

/** What a launch reports. After `failed`, nothing; after `started`, exactly one `closed`. */
export interface LaunchHandlers {
  /** It runs: its pid and its three pipes. */
  started(pipes: LaunchedPipes): void;
  /** It could not be started at all (ENOENT, EACCES, the launcher unreachable). */
  failed(err: Error): void;
  /**
   * It exited and its stdout and stderr have ended, as child_process's 'close': every byte it
   * wrote has been read. `reason` says why when the launcher, not the process, ended it.
   */
  closed(code: number | null, signal: NodeJS.Signals | null, reason?: string): void;
}

/** Stops a launched process (or one still starting, which then never runs its command). */
export interface LaunchControl {
  kill(signal: NodeJS.Signals): void;
}

/** Starts a process with three pipes. */
export interface ProcessStarter {
  launch(command: string, args: string[], handlers: LaunchHandlers): LaunchControl;
  /** Readies what launches need, ahead of the first (while the service is still small). */
  warmUp(): void;
}

/** Starts each process with child_process in the calling process: forks it. */
export class DirectStarter implements ProcessStarter {
  warmUp(): void {
    // Nothing to ready.
  }

  launch(command: string, args: string[], handlers: LaunchHandlers): LaunchControl {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    if (child.pid === undefined) {
      child.on('error', (err) => handlers.failed(err));
    } else {
      // Once it runs, a failure to signal it is no news: its exit status says what happened.
      child.on('error', () => undefined);
      handlers.started({
        pid: child.pid,
        stdin: child.stdin,
        stdout: child.stdout,
        stderr: child.stderr,
      });
      child.on('close', (code, signal) => handlers.closed(code, signal));
    }
    return { kill: (signal) => child.kill(signal) };
  }
}

/**
 * The launcher's program, run by `node -e`. It spawns what it is asked to and sends back the
 * three pipes as handles over its IPC channel (they are Unix sockets, which Node can pass), then
 * each process's exit. Its copies of the pipes close once the service has them, so an end of
 * stream reaches the service as it would from its own child.
 *
 * The process waits at a gate, a shell reading one line from fd 3, until the service says it
 * holds all three pipes, and only then execs the command. Until then nothing is written to the
 * pipes, so nothing is read by the launcher's copies (which read until they close; Node gives no
 * public way to stop them first) and nothing is lost if the command exits at once (Node drains
 * and closes a child's pipes at its exit, which would otherwise race the sending).
 *
 * SIGINT and SIGTERM sent to the service's process group (Ctrl-C, a container stop) are the
 * service's to handle: the launcher ignores them and goes with its IPC channel, that is with the
 * service however it ends, killing what it still runs.
 */
const LAUNCHER_SCRIPT = `'use strict';
const { spawn } = require('node:child_process');
const { accessSync, constants } = require('node:fs');
const GATE = 'read -r _ <&3 && exec 3<&- && exec "$@"';
const children = new Map();
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('disconnect', () => {
  for (const { child } of children.values()) child.kill('SIGKILL');
  process.exit(0);
});
process.on('message', (m) => {
  const entry = children.get(m.id);
  if (m.op === 'kill') {
    if (entry) entry.child.kill(m.signal);
    return;
  }
  if (m.op === 'go') {
    if (entry) entry.gate.end('\\n');
    return;
  }
  let child;
  try {
    // A path that cannot be run fails here, as a spawn would; the gate would only exit 127.
    if (m.command.includes('/')) accessSync(m.command, constants.X_OK);
    child = spawn('sh', ['-c', GATE, 'sh', m.command, ...m.args], {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    });
  } catch (err) {
    process.send({ id: m.id, kind: 'error', message: String(err && err.message) });
    return;
  }
  if (child.pid === undefined) {
    child.on('error', (err) => process.send({ id: m.id, kind: 'error', message: err.message }));
    return;
  }
  const gate = child.stdio[3];
  gate.on('error', () => {});
  children.set(m.id, { child, gate });
  child.on('exit', (code, signal) => {
    children.delete(m.id);
    gate.destroy();
    process.send({ id: m.id, kind: 'exit', code, signal });
  });
  process.send({ id: m.id, kind: 'stdin', pid: child.pid }, child.stdin);
  process.send({ id: m.id, kind: 'stdout' }, child.stdout);
  process.send({ id: m.id, kind: 'stderr' }, child.stderr);
});
`;

type LauncherMessage =
  | { id: number; kind: 'stdin'; pid: number }
  | { id: number; kind: 'stdout' | 'stderr' }
  | { id: number; kind: 'error'; message: string }
  | { id: number; kind: 'exit'; code: number | null; signal: NodeJS.Signals | null };

/** One process asked of the launcher, from the request until it has closed. */
interface Launch {
  readonly handlers: LaunchHandlers;
  readonly launcher: ChildProcess;
  pid?: number;
  stdin?: Socket;
  stdout?: Socket;
  stderr?: Socket;
  exit?: { code: number | null; signal: NodeJS.Signals | null; reason?: string };
  /** Streams of stdout and stderr still open: `closed` waits for both and the exit. */
  openStreams: number;
  /** A kill asked before its pipes arrived, sent on as soon as it runs. */
  killWith?: NodeJS.Signals;
  timer?: NodeJS.Timeout;
  done: boolean;
}

/**
 * Starts processes through one long-lived helper process, so that the service never forks
 * itself. A fork copies the forking process's page tables: for a service of 300 MB of heap it
 * held the event loop 83–93 ms per encoder started (26 at once when 26 sessions opened, three
 * more per session split at `close`; bench:spawn measures it). The helper is a small Node
 * process started once (restarted if it dies); its forks are cheap and off the service's loop.
 * The pipes it hands back are the process's own, so frames and output never pass through it.
 *
 * If the helper dies, the processes it ran lose their exit status: each is killed and reported
 * closed by SIGKILL with the reason, and the next launch starts a new helper.
 */
export class LauncherStarter implements ProcessStarter {
  private launcher: ChildProcess | null = null;
  private nextId = 1;
  private readonly launches = new Map<number, Launch>();

  /** @param answerTimeoutMs a launch unanswered this long means the helper is stuck: replaced. */
  constructor(private readonly answerTimeoutMs = 30_000) {}

  warmUp(): void {
    if (!this.launcher) {
      this.start();
    }
  }

  /** The helper's pid, while it runs. */
  get launcherPid(): number | undefined {
    return this.launcher?.pid;
  }

  launch(command: string, args: string[], handlers: LaunchHandlers): LaunchControl {
    // One whose channel closed is going (its exit may not have been seen yet).
    const launcher = this.launcher?.connected ? this.launcher : this.start();
    const id = this.nextId++;
    const launch: Launch = { handlers, launcher, openStreams: 2, done: false };
    this.launches.set(id, launch);
    this.holdLoop(launcher);
    launch.timer = setTimeout(() => {
      this.discard(launcher);
      this.fail(id, `the process launcher did not answer within ${this.answerTimeoutMs} ms`);
    }, this.answerTimeoutMs);
    launch.timer.unref();
    launcher.send({ op: 'spawn', id, command, args }, (err) => {
      if (err) {
        this.discard(launcher);
        this.fail(id, `the process launcher is unreachable: ${err.message}`);
      }
    });
    return {
      kill: (signal) => {
        if (launch.done || launch.exit) {
          return;
        }
        if (launch.stdin === undefined) {
          launch.killWith = signal;
        } else if (launcher.connected) {
          launcher.send({ op: 'kill', id, signal }, () => undefined);
        }
      },
    };
  }

  private start(): ChildProcess {
    const launcher = spawn(process.execPath, ['-e', LAUNCHER_SCRIPT], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    this.launcher = launcher;
    launcher.on('message', (message: LauncherMessage, handle?: Socket) =>
      this.received(message, handle),
    );
    const gone = (why: string): void => {
      if (this.launcher === launcher) {
        this.launcher = null;
      }
      this.orphaned(launcher, why);
    };
    launcher.on('error', (err) => gone(`the process launcher failed: ${err.message}`));
    launcher.on('exit', (code, signal) =>
      gone(`the process launcher exited (${signal ?? `code ${code}`})`),
    );
    // Idle, neither the helper nor its channel keeps the service's event loop alive.
    launcher.unref();
    launcher.channel?.unref();
    return launcher;
  }

  /** Stops a launcher that failed us; the next launch starts another. */
  private discard(launcher: ChildProcess): void {
    if (this.launcher === launcher) {
      this.launcher = null;
    }
    launcher.kill('SIGKILL');
  }

  private received(message: LauncherMessage, handle?: Socket): void {
    const launch = this.launches.get(message.id);
    if (!launch || launch.done) {
      handle?.destroy();
      return;
    }
    switch (message.kind) {
      case 'error':
        this.fail(message.id, message.message);
        return;
      case 'stdin':
        launch.pid = message.pid;
        launch.stdin = handle;
        return;
      case 'stdout':
        launch.stdout = handle;
        return;
      case 'stderr':
        launch.stderr = handle;
        this.started(message.id, launch);
        return;
      case 'exit':
        launch.exit = { code: message.code, signal: message.signal };
        this.settle(message.id, launch);
        return;
    }
  }

  private started(id: number, launch: Launch): void {
    const { pid, stdin, stdout, stderr } = launch;
    if (pid === undefined || !stdin || !stdout || !stderr) {
      this.fail(id, 'the process launcher sent no pipes');
      return;
    }
    clearTimeout(launch.timer);
    for (const stream of [stdin, stdout, stderr]) {
      // A reset is no news: the exit status says what happened.
      stream.on('error', () => undefined);
    }
    for (const stream of [stdout, stderr]) {
      stream.once('close', () => {
        launch.openStreams--;
        this.settle(id, launch);
      });
    }
    // The other directions of the sockets carry nothing: stdin is only written, stdout and
    // stderr only read.
    launch.handlers.started({ pid, stdin, stdout, stderr });
    if (launch.killWith) {
      launch.launcher.send({ op: 'kill', id, signal: launch.killWith }, () => undefined);
    } else {
      // All three pipes are here: the command may run (see LAUNCHER_SCRIPT).
      launch.launcher.send({ op: 'go', id }, () => undefined);
    }
  }

  /** `closed` once the exit and both streams' ends are in. */
  private settle(id: number, launch: Launch): void {
    if (launch.done || !launch.exit || launch.openStreams > 0) {
      return;
    }
    launch.done = true;
    this.launches.delete(id);
    this.holdLoop(launch.launcher);
    launch.handlers.closed(launch.exit.code, launch.exit.signal, launch.exit.reason);
  }

  /** A launch that never ran: `failed`, and any pipe already received closed. */
  private fail(id: number, reason: string): void {
    const launch = this.launches.get(id);
    if (!launch || launch.done) {
      return;
    }
    if (launch.stderr) {
      // It runs (all three pipes are in): only its exit is missing.
      this.orphan(id, launch, reason);
      return;
    }
    launch.done = true;
    this.launches.delete(id);
    clearTimeout(launch.timer);
    this.holdLoop(launch.launcher);
    if (launch.pid !== undefined) {
      killQuietly(launch.pid);
    }
    launch.stdin?.destroy();
    launch.stdout?.destroy();
    launch.handlers.failed(new Error(reason));
  }

  /** The helper is gone: what it ran can no longer report an exit. */
  private orphaned(launcher: ChildProcess, reason: string): void {
    for (const [id, launch] of this.launches) {
      if (launch.launcher === launcher) {
        this.fail(id, reason);
      }
    }
  }

  /** A running process whose exit will never be reported: killed, and closed once its pipes end. */
  private orphan(id: number, launch: Launch, reason: string): void {
    if (launch.exit) {
      return;
    }
    if (launch.pid !== undefined) {
      killQuietly(launch.pid);
    }
    launch.exit = { code: null, signal: 'SIGKILL', reason };
    this.settle(id, launch);
  }

  /**
   * The channel keeps the event loop alive while a launch is under way (as a child process would),
   * and not while idle.
   */
  private holdLoop(launcher: ChildProcess): void {
    let busy = false;
    for (const launch of this.launches.values()) {
      busy ||= launch.launcher === launcher && !launch.done;
    }
    if (busy) {
      launcher.channel?.ref();
    } else {
      launcher.channel?.unref();
    }
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/**
 * How the service starts its encoders: through the launcher where pipes can be passed as handles
 * (Unix), by forking itself elsewhere.
 */
export const PROCESS_STARTER: ProcessStarter =
  process.platform === 'win32' ? new DirectStarter() : new LauncherStarter();
