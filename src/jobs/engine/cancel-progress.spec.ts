import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { jobDir, makeVideo, TOOLS } from '../../../test/support/job-media';
import { findOnPath } from '../../media/ffmpeg-locator';
import { type EngineContext, runJob } from './engine';
import { JobCancelledError } from './errors';
import { engineJobSchema } from './job-spec';
import { ProgressMeter } from './progress';
import { runTool } from './tool-process';

const SCHED_IDLE = 5;

/** Children of this process whose command line contains `marker`. */
function childPids(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (ppid === process.pid && cmdline.includes(marker)) {
        pids.push(Number(entry));
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** Scheduling policy and nice level of a process, from /proc (fields 41 and 19). */
function schedOf(pid: number): { policy: number; nice: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { nice: Number(fields[19 - 3]), policy: Number(fields[41 - 3]) };
}

async function waitFor<T>(probe: () => T | null | undefined | false, what: string): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const value = probe();
    if (value) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not seen within 60 s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Polls /proc/<pid> for up to 2 s: true once the process is gone. */
async function goneWithin2s(pid: number): Promise<boolean> {
  const deadline = Date.now() + 2000;
  while (existsSync(`/proc/${pid}`)) {
    if (Date.now() > deadline) {
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

describe('media job engine: cancel and progress', () => {
  const dirs: Array<{ remove(): void }> = [];
  afterAll(() => dirs.forEach((d) => d.remove()));
  function folder(prefix: string): string {
    const d = jobDir(prefix);
    dirs.push(d);
    return d.dir;
  }

  it('runs ffmpeg in the background CPU class by default, and a cancel kills it (gone within 2 s) and rejects with JobCancelledError', async () => {
    const dir = folder('cancel');
    await makeVideo(dir, 'in/long.mp4', {
      seconds: 120,
      width: 640,
      height: 480,
      extra: ['-preset', 'ultrafast'],
    });
    const abort = new AbortController();
    const ctx: EngineContext = {
      dir,
      signal: abort.signal,
      onProgress: () => undefined,
      tools: TOOLS,
    };
    const run = runJob(
      engineJobSchema.parse({ type: 'transcode', input: { file: 'in/long.mp4' } }),
      ctx,
    );
    run.catch(() => undefined);
    const [pid] = await waitFor(() => {
      const pids = childPids('./out/video.mp4');
      return pids.length > 0 && pids;
    }, 'the transcode ffmpeg');
    const hasChrt = findOnPath('chrt') !== null;
    await waitFor(
      () => schedOf(pid).nice === 19 && (!hasChrt || schedOf(pid).policy === SCHED_IDLE),
      'ffmpeg in the background class',
    );
    abort.abort();
    await expect(goneWithin2s(pid)).resolves.toBe(true);
    await expect(run).rejects.toThrow(JobCancelledError);
  });

  it('kills a process that ignores SIGTERM with SIGKILL after the grace period', async () => {
    const abort = new AbortController();
    const marker = 'framegate-ignores-sigterm';
    let ready = false;
    const run = runTool({
      command: process.execPath,
      args: [
        '-e',
        `process.on('SIGTERM', () => {}); require('fs').writeSync(3, 'ready\\n'); setInterval(() => {}, 1000); // ${marker}`,
      ],
      cwd: '/',
      signal: abort.signal,
      cpuClass: 'normal',
      label: 'stubborn',
      // It says so once its SIGTERM handler is in place: before that, SIGTERM alone would end it.
      onFd3Line: (line) => {
        ready ||= line === 'ready';
      },
    });
    run.catch(() => undefined);
    await waitFor(() => ready, 'the stubborn process ready');
    const [pid] = childPids(marker);
    abort.abort();
    await expect(goneWithin2s(pid)).resolves.toBe(true);
    await expect(run).rejects.toThrow(JobCancelledError);
  });

  it('never starts a process whose job was cancelled while it waited for its turn', async () => {
    const abort = new AbortController();
    abort.abort();
    await expect(
      runTool({
        command: TOOLS.ffmpeg,
        args: ['-version'],
        cwd: '/',
        signal: abort.signal,
        cpuClass: 'normal',
        label: 'never',
      }),
    ).rejects.toThrow(JobCancelledError);
  });

  it('reports progress from 0 rising monotonically to 100', async () => {
    const dir = folder('progress');
    await makeVideo(dir, 'in/clip.mp4', {
      seconds: 40,
      width: 640,
      height: 480,
      extra: ['-preset', 'ultrafast'],
    });
    const progress: number[] = [];
    await runJob(engineJobSchema.parse({ type: 'transcode', input: { file: 'in/clip.mp4' } }), {
      dir,
      signal: new AbortController().signal,
      onProgress: (p) => progress.push(p),
      tools: TOOLS,
      cpuClass: 'low',
    });
    expect(progress[0]).toBe(0);
    expect(progress[progress.length - 1]).toBe(100);
    for (let i = 1; i < progress.length; i++) {
      expect(progress[i]).toBeGreaterThan(progress[i - 1]);
    }
    // ffmpeg reports twice a second; 40 s of 640×480 take longer than that to encode.
    expect(progress.some((p) => p > 0 && p < 100)).toBe(true);
  });
});

describe('ProgressMeter', () => {
  it('maps out_time against the expected duration into the stage, throttled, never going back', () => {
    let now = 0;
    const seen: number[] = [];
    const meter = new ProgressMeter(
      (p) => seen.push(p),
      () => now,
    );
    meter.set(0);
    meter.stage(0, 90, 10);
    now += 500;
    meter.line('out_time_us=2000000');
    now += 100;
    // Within the throttle interval: held back.
    meter.line('out_time_us=3000000');
    now += 500;
    meter.line('out_time_ms=5000000');
    now += 500;
    meter.line('out_time_us=4000000');
    meter.line('out_time_us=N/A');
    meter.line('progress=continue');
    now += 500;
    meter.line('progress=end');
    meter.done();
    expect(seen).toEqual([0, 18, 45, 90, 100]);
  });

  it('gives each stage its share of the job', () => {
    let now = 0;
    const seen: number[] = [];
    const meter = new ProgressMeter(
      (p) => seen.push(p),
      () => now,
    );
    meter.stage(0, 50, 1);
    now += 1000;
    meter.line('progress=end');
    now += 1000;
    meter.stage(50, 100, 1);
    now += 1000;
    meter.line('out_time_us=500000');
    now += 1000;
    meter.line('out_time_us=1000000');
    expect(seen).toEqual([0, 50, 75, 100]);
  });
});
