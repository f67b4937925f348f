/**
 * Prints the run's closing line in the plain form CI reads: `tests: N passed, N failed`, counting
 * the tests of an earlier run of the same `npm test` (FRAMEGATE_TESTS_EARLIER, `passed,failed`,
 * see run-tests.js), whose own line is left out (FRAMEGATE_TEST_SUMMARY=off). Jest's own summary
 * stays as it is.
 */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    if (process.env.FRAMEGATE_TEST_SUMMARY === 'off') {
      return;
    }
    const [passed, failed] = (process.env.FRAMEGATE_TESTS_EARLIER ?? '0,0').split(',').map(Number);
    process.stdout.write(
      `\ntests: ${results.numPassedTests + passed} passed, ${results.numFailedTests + failed} failed\n`,
    );
  }
}

module.exports = SummaryReporter;
