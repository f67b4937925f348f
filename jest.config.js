const os = require('node:os');

/** Unit specs live beside the code (src/**\/*.spec.ts); e2e specs on real Postgres in test/. */
module.exports = {
  rootDir: '.',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/**/*.e2e-spec.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  // Half the cores this process may run on (os.availableParallelism), at least one: every e2e
  // suite runs a whole service whose ffmpeg children and the shared Postgres need CPU beside the
  // Jest worker. On a busy 2-core machine that is one worker, in band: with two, workers starved
  // of CPU missed jest-worker's 500 ms exit deadline ("failed to exit gracefully") although
  // nothing was left open. `npx jest --maxWorkers=N` still overrides it.
  maxWorkers: Math.max(1, Math.floor(os.availableParallelism() / 2)),
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
  // Real ffmpeg and Postgres work on a busy machine: generous. A hang still fails, and the waits
  // inside the tests (waitFor, StreamClient.next) end sooner with what they were waiting for.
  testTimeout: 120_000,
  // ws/pg sockets and child processes are closed by each suite; this catches the ones that are not.
  forceExit: false,
};
