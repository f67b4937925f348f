import { execFileSync } from 'node:child_process';
import { backgroundCommand } from './background-priority';

/** The scheduling policy of the process that prints its own /proc/self/stat (field 41). */
function policyOf(stat: string): number {
  const afterComm = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields from 3 on follow the command name; policy is field 41.
  return Number(afterComm[41 - 3]);
}

const SCHED_OTHER = 0;
const SCHED_IDLE = 5;

describe('backgroundCommand', () => {
  it('runs the command under SCHED_IDLE', () => {
    const run = backgroundCommand('/bin/cat', ['/proc/self/stat']);
    expect(run.idle).toBe(true);
    const stat = execFileSync(run.command, run.args, { encoding: 'utf8' });
    expect(policyOf(stat)).toBe(SCHED_IDLE);
    expect(policyOf(execFileSync('/bin/cat', ['/proc/self/stat'], { encoding: 'utf8' }))).toBe(
      SCHED_OTHER,
    );
  });

  it('leaves a command that cannot run unwrapped, so its spawn error names it', () => {
    expect(backgroundCommand('/no/such/ffmpeg', ['-version'])).toEqual({
      command: '/no/such/ffmpeg',
      args: ['-version'],
      idle: false,
    });
  });
});
