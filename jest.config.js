const os = require('node:os');

/** Unit specs live beside the code (src/**\/*.spec.ts); e2e specs on real Postgres in test/. */
module.exports = {
  rootDir: '.',
  testEnvironment: 'node',
  testMatch: [
    '<rootDir>/src/**/*.spec.ts',
    '<rootDir>/client/src/**/*.spec.ts',
    '<rootDir>/test/**/*.e2e-spec.ts',
  ],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  // The SDK (client/) is ESM and imports './x.js', which names './x.ts' before it is built.
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  modulePathIgnorePatterns: ['<rootDir>/client/dist/'],
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  // One worker per core this process may run on (os.availableParallelism), at least one. Half the
  // cores (one worker, in band, here) was tried: on a 2-core machine kept busy by two busy loops,
  // the recording backpressure test's encoder, moved to SCHED_IDLE by design, then got no CPU
  // at all and the run stalled. `npx jest --maxWorkers=N` still overrides it.
  maxWorkers: Math.max(1, os.availableParallelism()),
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
  // Real ffmpeg and Postgres work on a busy machine: generous. A hang still fails, and the waits
  // inside the tests (waitFor, StreamClient.next) end sooner with what they were waiting for.
  testTimeout: 120_000,
  // ws/pg sockets and child processes are closed by each suite; this catches the ones that are not.
  forceExit: false,
};
