import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

/** The built CLI (`framegate-push`), as `npm run push` runs it. */
export const PUSH = join(__dirname, '..', '..', 'client/dist/client/src/cli/push.js');

export interface PushRun {
  child: ChildProcess;
  /** stderr so far (progress lines). */
  stderr(): string;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Runs the built CLI as a user would; its stdin is a pipe. */
export function runPush(args: string[]): PushRun {
  const child = spawn(process.execPath, [PUSH, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  return { child, stderr: () => stderr, done };
}

/** What the CLI prints on stdout when it is done (its last line). */
export interface PushResult {
  sessionId: string;
  frames: number;
  recording: { id: string; status: string; durationMs: number };
}

export function pushResult(stdout: string): PushResult {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as PushResult;
}
