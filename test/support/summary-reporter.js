/**
 * Prints the run's closing line in the plain form CI reads: `tests: N passed, N failed`.
 * Jest's own summary stays as it is.
 */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    process.stdout.write(
      `\ntests: ${results.numPassedTests} passed, ${results.numFailedTests} failed\n`,
    );
  }
}

module.exports = SummaryReporter;
