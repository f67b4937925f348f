/**
 * `npm test`. With arguments, one Jest run with them (`npm test -- test/cors`). Without, the
 * whole suite in two runs:
 * - first the files that compare a canary's acks beside a burst with its acks alone, in the same
 *   test, one at a time with nothing else on the machine: the rule (twice the gap alone) is about
 *   the node's own pace, and a neighbouring test file on the same two cores is load the node
 *   cannot rank below its acks (in CI a neighbour's cluster or browser coincided with ack gaps
 *   of a second, and the unit specs beside it with gaps of 450 ms against 209 alone);
 * - then every other file, in parallel.
 * One closing `tests:` line counts both runs; the exit code fails when either failed.
 */
const { spawnSync } = require('node:child_process');
const { mkdtempSync, readFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const ALONE = ['test/recording-burst.e2e-spec.ts'];
const JEST = ['--expose-gc', join(__dirname, '..', '..', 'node_modules', 'jest', 'bin', 'jest.js')];

function jest(args, env = {}) {
  const run = spawnSync(process.execPath, [...JEST, ...args], {
    stdio: 'inherit',
    env: { ...process.env, ...env },
  });
  return run.status ?? 1;
}

const args = process.argv.slice(2);
if (args.length > 0) {
  process.exit(jest(args));
}

const dir = mkdtempSync(join(tmpdir(), 'framegate-tests-'));
const results = join(dir, 'alone.json');
const first = jest(['--runInBand', '--json', `--outputFile=${results}`, ...ALONE], {
  FRAMEGATE_TEST_SUMMARY: 'off',
});
let earlier = { passed: 0, failed: first === 0 ? 0 : 1 };
try {
  const json = JSON.parse(readFileSync(results, 'utf8'));
  earlier = {
    passed: json.numPassedTests,
    // A file that failed to run has no failed test: it still counts as one.
    failed: Math.max(json.numFailedTests, first === 0 ? 0 : 1),
  };
} catch {
  // No results (Jest itself failed): counted as one failure above.
}
rmSync(dir, { recursive: true, force: true });
const second = jest(['--testPathIgnorePatterns', ...ALONE], {
  FRAMEGATE_TESTS_EARLIER: `${earlier.passed},${earlier.failed}`,
});
process.exit(first !== 0 ? first : second);
