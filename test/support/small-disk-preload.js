'use strict';
/**
 * Preloaded into the service under test (`NODE_OPTIONS=--require <this file>`): DATA_DIR becomes
 * a small emulated file system of FRAMEGATE_TEST_DISK_BYTES when FRAMEGATE_TEST_DISK_DIR is set.
 */
const dir = process.env.FRAMEGATE_TEST_DISK_DIR;
if (dir) {
  const capacity = Number(process.env.FRAMEGATE_TEST_DISK_BYTES);
  if (!Number.isSafeInteger(capacity) || capacity <= 0) {
    throw new Error(`FRAMEGATE_TEST_DISK_BYTES must be a positive integer, not ${capacity}`);
  }
  require('./small-disk').install({ dir, capacity });
}
