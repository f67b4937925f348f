import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { descendantsMatching } from '../../test/support/processes';
import { waitFor } from '../../test/support/wait';
import { type LaunchedPipes, LauncherStarter, type ProcessStarter } from './process-launcher';

interface Outcome {
  pipes: LaunchedPipes | null;
  stdout: string;
  stderr: string;
  /** Settles with `closed`'s arguments, or the `failed` error. */
  end: Promise<
    { closed: { code: number | null; signal: string | null; reason?: string } } | { failed: Error }
  >;
  kill(signal: NodeJS.Signals): void;
}

/** Launches and collects what the handlers report. */
function launch(starter: ProcessStarter, command: string, args: string[]): Outcome {
  let settle: (value: Awaited<Outcome['end']>) => void = () => undefined;
  const outcome: Outcome = {
    pipes: null,
    stdout: '',
    stderr: '',
    end: new Promise((resolve) => (settle = resolve)),
    kill: () => undefined,
  };
  let reports = 0;
  const control = starter.launch(command, args, {
    started: (pipes) => {
      outcome.pipes = pipes;
      pipes.stdout.setEncoding('utf8');
      pipes.stdout.on('data', (text: string) => (outcome.stdout += text));
      pipes.stderr.setEncoding('utf8');
      pipes.stderr.on('data', (text: string) => (outcome.stderr += text));
    },
    failed: (err) => {
      reports++;
      settle({ failed: err });
    },
    closed: (code, signal, reason) => {
      reports++;
      settle({ closed: { code, signal, reason } });
    },
  });
  outcome.kill = (signal) => control.kill(signal);
  // One report only, ever: checked when the test has waited for the end.
  void outcome.end.then(() => setTimeout(() => expect(reports).toBe(1), 50));
  return outcome;
}

/** Running, not a zombie (an orphan is reaped by whoever adopts it, maybe never here). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

describe('LauncherStarter', () => {
  let starter: LauncherStarter;

  beforeEach(() => {
    starter = new LauncherStarter(1_500);
  });

  afterEach(() => {
    const pid = starter.launcherPid;
    if (pid !== undefined) {
      process.kill(pid, 'SIGKILL');
    }
  });

  it('runs a process under the launcher, with its pipes here and its exit status after its output', async () => {
    starter.warmUp();
    const launcherPid = starter.launcherPid;
    const run = launch(starter, 'sh', ['-c', 'cat; echo oops >&2; exit 3']);
    await waitFor(() => run.pipes !== null, 10_000, 'pipes');
    const pid = run.pipes!.pid;
    // A grandchild: forked by the launcher, not by this process.
    expect(descendantsMatching('cat; echo oops').map((p) => [p.pid, p.ppid])).toEqual([
      [pid, launcherPid],
    ]);
    run.pipes!.stdin.write('hello ');
    run.pipes!.stdin.end('world');
    expect(await run.end).toEqual({ closed: { code: 3, signal: null, reason: undefined } });
    expect(run.stdout).toBe('hello world');
    expect(run.stderr).toBe('oops\n');
    expect(alive(pid)).toBe(false);
  });

  it('carries a megabyte each way without loss and ends the stream when the process does', async () => {
    const run = launch(starter, 'cat', []);
    await waitFor(() => run.pipes !== null, 10_000, 'pipes');
    const chunk = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 16; i++) {
      if (!run.pipes!.stdin.write(chunk)) {
        await new Promise((r) => run.pipes!.stdin.once('drain', r));
      }
    }
    run.pipes!.stdin.end();
    expect(await run.end).toEqual({ closed: { code: 0, signal: null, reason: undefined } });
    expect(run.stdout.length).toBe(16 * chunk.length);
  });

  it('reports a command that cannot be started as failed, and nothing else', async () => {
    const run = launch(starter, '/nonexistent/ffmpeg', []);
    const end = await run.end;
    expect('failed' in end && end.failed.message).toMatch(/ENOENT/);
    expect(run.pipes).toBeNull();
  });

  it('loses nothing a process writes as it starts, even when it exits at once', async () => {
    for (let i = 0; i < 20; i++) {
      const run = launch(starter, 'sh', ['-c', `echo out${i}; echo err${i} >&2; exit 7`]);
      expect(await run.end).toEqual({ closed: { code: 7, signal: null, reason: undefined } });
      expect([run.stdout, run.stderr]).toEqual([`out${i}\n`, `err${i}\n`]);
    }
  });

  it('kills a process asked to die before its pipes arrived, and one that runs', async () => {
    const early = launch(starter, 'sleep', ['600']);
    early.kill('SIGKILL');
    expect(await early.end).toEqual({
      closed: { code: null, signal: 'SIGKILL', reason: undefined },
    });
    const running = launch(starter, 'sleep', ['600']);
    await waitFor(() => running.pipes !== null, 10_000, 'pipes');
    running.kill('SIGTERM');
    expect(await running.end).toEqual({
      closed: { code: null, signal: 'SIGTERM', reason: undefined },
    });
    expect(alive(running.pipes!.pid)).toBe(false);
  });

  it('when the launcher dies, kills what it ran, says why, and starts a new one for the next launch', async () => {
    starter.warmUp();
    const first = starter.launcherPid!;
    const runs = [launch(starter, 'sleep', ['600']), launch(starter, 'sleep', ['601'])];
    await waitFor(() => runs.every((r) => r.pipes !== null), 10_000, 'pipes');
    process.kill(first, 'SIGKILL');
    for (const run of runs) {
      const end = await run.end;
      expect(end).toEqual({
        closed: { code: null, signal: 'SIGKILL', reason: expect.stringMatching(/launcher exited/) },
      });
      expect(alive(run.pipes!.pid)).toBe(false);
    }
    const next = launch(starter, 'sh', ['-c', 'echo again']);
    expect(await next.end).toEqual({ closed: { code: 0, signal: null, reason: undefined } });
    expect(next.stdout).toBe('again\n');
    expect(starter.launcherPid).not.toBe(first);
  });

  it('replaces a launcher that does not answer, failing the launch it kept waiting', async () => {
    starter.warmUp();
    const stuck = starter.launcherPid!;
    process.kill(stuck, 'SIGSTOP');
    const run = launch(starter, 'sh', ['-c', 'echo never']);
    const end = await run.end;
    expect('failed' in end && end.failed.message).toMatch(/did not answer within 1500 ms/);
    await waitFor(() => !alive(stuck), 10_000, 'the stuck launcher gone');
    const next = launch(starter, 'sh', ['-c', 'echo fresh']);
    expect(await next.end).toEqual({ closed: { code: 0, signal: null, reason: undefined } });
    expect(next.stdout).toBe('fresh\n');
  });
});

describe('the launcher and the service process', () => {
  /** A Node process that uses the launcher as the service does, printing what it reports. */
  function service(body: string): ReturnType<typeof spawn> {
    const module = join(__dirname, 'process-launcher');
    return spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        '-e',
        `const L = require(${JSON.stringify(module)}); ${body}`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
  }

  async function lines(child: ReturnType<typeof spawn>, count: number): Promise<string[]> {
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => (out += text));
    await waitFor(() => out.split('\n').length > count, 30_000, `${count} lines`);
    return out.split('\n').slice(0, count);
  }

  it('goes with the service when it is killed, taking what it ran with it', async () => {
    const child = service(`
      const s = new L.LauncherStarter();
      s.launch('sleep', ['600'], {
        started: (p) => console.log(s.launcherPid + ' ' + p.pid),
        failed: (e) => console.log('failed ' + e.message),
        closed: () => undefined,
      });`);
    const [line] = await lines(child, 1);
    const [launcherPid, sleepPid] = line.split(' ').map(Number);
    expect(alive(launcherPid) && alive(sleepPid)).toBe(true);
    child.kill('SIGKILL');
    await waitFor(() => !alive(launcherPid) && !alive(sleepPid), 10_000, 'launcher and sleep gone');
  });

  it('keeps the service alive only while a launch is under way', async () => {
    const child = service(`
      const s = new L.LauncherStarter();
      s.warmUp();
      s.launch('sh', ['-c', 'sleep 0.3'], {
        started: () => console.log('started'),
        failed: (e) => console.log('failed ' + e.message),
        closed: (code) => console.log('closed ' + code),
      });`);
    const output = lines(child, 2);
    const [code] = (await once(child, 'exit')) as [number | null];
    // It ran to the end, then exited by itself with the launcher idle.
    expect(await output).toEqual(['started', 'closed 0']);
    expect(code).toBe(0);
  });
});
