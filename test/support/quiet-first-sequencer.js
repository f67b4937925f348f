const Sequencer = require('@jest/test-sequencer').default;

/**
 * Test files whose canary compares ack gaps during a burst with the gaps alone, in the same
 * test: a neighbouring file's cluster, browser or kill -9 on the other worker (disk flushes
 * included) can stall one fdatasync for a second and fail them. They run first, while the other
 * worker goes through the unit specs, whose load is CPU alone (the canary passes beside two busy
 * loops). Then every other file, in Jest's own order.
 */
const QUIET_FIRST = ['/test/recording-burst.e2e-spec.ts'];

class QuietFirstSequencer extends Sequencer {
  sort(tests) {
    const sorted = super.sort(tests);
    const quiet = sorted.filter((t) => QUIET_FIRST.some((name) => t.path.endsWith(name)));
    const units = sorted.filter((t) => !quiet.includes(t) && !t.path.includes('/test/'));
    const rest = sorted.filter((t) => !quiet.includes(t) && !units.includes(t));
    return [...quiet, ...units, ...rest];
  }
}

module.exports = QuietFirstSequencer;
