import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { setCpuClass } from './cpu-class';
import { findOnPath } from './ffmpeg-locator';

/** Scheduling policy (0 SCHED_OTHER, 5 SCHED_IDLE) and nice level of a process, from /proc. */
function schedOf(pid: number): { policy: number; nice: number } {
  // Fields after the command name, which is in parentheses and may hold spaces.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // /proc/[pid]/stat: nice is field 19, policy field 41; `fields` starts at field 3.
  return { nice: Number(fields[19 - 3]), policy: Number(fields[41 - 3]) };
}

/** This process's children running a shell (the policy setter's), from /proc. */
function shellChildren(): number[] {
  const pids = readdirSync(`/proc/${process.pid}/task`).flatMap((tid) =>
    readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean),
  );
  return pids.map(Number).filter((pid) => {
    try {
      return /^sh$/.test(readFileSync(`/proc/${pid}/comm`, 'utf8').trim());
    } catch {
      return false; // exited meanwhile
    }
  });
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`${what} not reached`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

const SCHED_OTHER = 0;
const SCHED_IDLE = 5;
// Linux only, like the service (/proc, SCHED_IDLE).
describe('setCpuClass', () => {
  // Shells other test files' copies of the module started in this Jest worker: not this one's.
  let othersShells: Set<number>;
  beforeAll(() => {
    othersShells = new Set(shellChildren());
  });
  let child: ChildProcess;
  beforeEach(() => {
    child = spawn('sleep', ['60'], { stdio: 'ignore' });
  });
  afterEach(() => {
    child.kill('SIGKILL');
  });

  it('moves a process to the background (SCHED_IDLE, nice 19), then to low (normal scheduling, nice 19) so it is never starved', async () => {
    const pid = child.pid as number;
    const hasChrt = findOnPath('chrt') !== null;
    setCpuClass(pid, 'background');
    await until(
      () => schedOf(pid).nice === 19 && (!hasChrt || schedOf(pid).policy === SCHED_IDLE),
      'background class',
    );
    setCpuClass(pid, 'low', 'background');
    await until(() => schedOf(pid).nice === 19 && schedOf(pid).policy === SCHED_OTHER, 'low class');
  });

  it('applies many changes in the order they were asked for, through one shell that comes back if it is killed', async () => {
    // util-linux, on every Linux machine the service and its CI run on.
    expect(findOnPath('chrt')).not.toBeNull();
    const pid = child.pid as number;
    for (let i = 0; i < 25; i++) {
      setCpuClass(pid, 'background');
      setCpuClass(pid, 'low', 'background');
    }
    setCpuClass(pid, 'background');
    await until(() => schedOf(pid).policy === SCHED_IDLE, 'the last change');
    // Settled: no change still queued behind it turns it back.
    await new Promise((r) => setTimeout(r, 200));
    expect(schedOf(pid).policy).toBe(SCHED_IDLE);

    const ours = (): number[] => shellChildren().filter((pid) => !othersShells.has(pid));
    const shells = ours();
    expect(shells).toHaveLength(1);
    process.kill(shells[0], 'SIGKILL');
    await until(() => ours().length === 0, 'the shell gone');
    setCpuClass(pid, 'low', 'background');
    await until(() => schedOf(pid).policy === SCHED_OTHER, 'a change after the shell died');
  });

  it('moves a live encoder to nice 15 with normal scheduling, and back to the service priority', () => {
    const pid = child.pid as number;
    setCpuClass(pid, 'live');
    expect(schedOf(pid)).toEqual({ nice: 15, policy: SCHED_OTHER });
    // Raising a priority needs CAP_SYS_NICE, which root has (the tests run as root in CI).
    setCpuClass(pid, 'normal', 'live');
    expect(schedOf(pid).nice).toBe(process.getuid?.() === 0 ? 0 : 15);
  });
});
