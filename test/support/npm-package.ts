import { type ChildProcess, spawn } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { testDir } from './dirs';
import { MAIN } from './service-process';

const ROOT = join(__dirname, '..', '..');

/**
 * A checkout as an operator has it, for running the real `npm start` (npm → the `start` script →
 * node) and `npm run token`: this repository's package.json, with node_modules, src, migrations
 * and the tsconfigs linked in. Its `dist/src/main.js` runs this repository's build (made once by the
 * global setup); `npm start --ignore-scripts` skips only the `prestart` build.
 */
export function npmPackageDir(prefix: string, dotEnv: Record<string, string>): string {
  const dir = testDir(prefix);
  copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  for (const name of [
    'node_modules',
    'src',
    'migrations',
    'tsconfig.json',
    'tsconfig.build.json',
  ]) {
    symlinkSync(join(ROOT, name), join(dir, name));
  }
  mkdirSync(join(dir, 'dist', 'src'), { recursive: true });
  writeFileSync(join(dir, 'dist', 'src', 'main.js'), `require(${JSON.stringify(MAIN)});\n`);
  writeFileSync(
    join(dir, '.env'),
    Object.entries(dotEnv)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
  );
  return dir;
}

/** The environment of an operator's shell: no framegate variable, nothing inherited from jest. */
export function shellEnv(): Record<string, string | undefined> {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'),
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
  };
}

/** `npm start` in its own process group, so a signal sent to npm reaches npm alone. */
export class NpmStart {
  readonly npm: ChildProcess;
  stdout = '';
  stderr = '';
  private readonly exited: Promise<number | null>;

  constructor(dir: string) {
    this.npm = spawn('npm', ['start', '--ignore-scripts'], {
      cwd: dir,
      env: shellEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.npm.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.npm.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => this.npm.once('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.npm.pid as number;
  }

  exit(): Promise<number | null> {
    return this.exited;
  }

  /** The JSON log lines of the service, parsed. */
  logs(): Array<Record<string, unknown>> {
    return this.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

/** Pids whose parent is `pid` (from /proc). */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Field 4 (ppid) follows the command name, which is in parentheses and may hold spaces.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) {
        children.push(Number(entry));
      }
    } catch {
      // The process ended while we looked.
    }
  }
  return children;
}

/** True while `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Pids whose command line mentions `text` (e.g. a DATA_DIR): what a stop may have left behind. */
export function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) {
      continue;
    }
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text) && alive(Number(entry))) {
        found.push(Number(entry));
      }
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}
