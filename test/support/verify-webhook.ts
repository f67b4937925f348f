import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The verification code docs/webhooks.md gives receivers, unchanged. */
export const VERIFY_WEBHOOK_FILE = join(
  __dirname,
  '..',
  '..',
  'docs',
  'examples',
  'verify-webhook.mjs',
);

export interface VerifyCase {
  rawBody: Buffer | string;
  header: string | undefined;
  secret: string;
  toleranceSeconds?: number;
}

/**
 * Runs `verifyFramegateSignature` of docs/examples/verify-webhook.mjs on each case, in a plain
 * Node process that imports the file as an ES module (as a receiver would; jest's module system
 * cannot load .mjs); returns its answers in order.
 */
export async function verifyWithDocsCode(cases: VerifyCase[]): Promise<boolean[]> {
  const script = `
    import { verifyFramegateSignature } from ${JSON.stringify(pathToFileURL(VERIFY_WEBHOOK_FILE).href)};
    let input = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d) => (input += d));
    process.stdin.on('end', () => {
      const answers = JSON.parse(input).map((c) =>
        verifyFramegateSignature(Buffer.from(c.body, 'base64'), c.header ?? undefined, c.secret, c.tolerance),
      );
      process.stdout.write(JSON.stringify(answers));
    });`;
  const input = JSON.stringify(
    cases.map((c) => ({
      body: Buffer.from(c.rawBody).toString('base64'),
      header: c.header ?? null,
      secret: c.secret,
      tolerance: c.toleranceSeconds,
    })),
  );
  const stdout = await new Promise<string>((resolve, reject) => {
    const child = execFile(
      process.execPath,
      ['--input-type=module', '-e', script],
      { timeout: 60_000 },
      (err, out, errOut) =>
        err
          ? reject(new Error(`verification code failed: ${err.message}\n${errOut}`))
          : resolve(out),
    );
    child.stdin?.end(input);
  });
  const answers = JSON.parse(stdout) as unknown;
  if (!Array.isArray(answers) || answers.length !== cases.length) {
    throw new Error(`unexpected answer from the verification code: ${stdout}`);
  }
  return answers as boolean[];
}
