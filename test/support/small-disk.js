'use strict';
/**
 * A small file system emulated for one directory, for tests where `mount -t tmpfs` is refused.
 * Plain CommonJS so a child process can preload it without ts-node
 * (`NODE_OPTIONS=--require …/small-disk-preload.js`); the test process imports only `usedBytes`.
 *
 * Space in use is the total size of the files under the directory, read by a walk (so files
 * written or removed by other processes, such as a test's filler, count) and reused for a few ms,
 * plus what this process has written since that walk or is writing now. Capacity is enforced on
 * `FileHandle.write` and `FileHandle.writev` (what the spool and the MP4 writer use) the way a real
 * file system does: a write that does not fit writes what fits and returns the short count; a
 * write when nothing fits fails with ENOSPC. `statfs` of a path under the directory reports the
 * emulated free space.
 */
const fs = require('node:fs');
const { resolve, join, sep } = require('node:path');
const { fileURLToPath } = require('node:url');

/** Block size reported by the emulated statfs. */
const BSIZE = 4096;
/** How long one directory walk is reused: spools and MP4s are appended concurrently. */
const WALK_MS = 10;
/** How long writes in flight may keep a new walk from running. */
const WALK_BUSY_MS = 500;

/** Total size in bytes of the regular files under `dir` (files vanishing mid-walk are skipped). */
function usedBytes(dir) {
  let total = 0;
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (err.code === 'ENOENT') {
      return 0;
    }
    throw err;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      total += usedBytes(path);
    } else if (entry.isFile()) {
      try {
        total += fs.lstatSync(path).size;
      } catch (err) {
        if (err.code !== 'ENOENT') {
          throw err;
        }
      }
    }
  }
  return total;
}

function enospc() {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), {
    code: 'ENOSPC',
    errno: -28,
    syscall: 'write',
  });
}

function pathOf(p) {
  if (p instanceof URL) {
    return fileURLToPath(p);
  }
  return resolve(Buffer.isBuffer(p) ? p.toString() : String(p));
}

/** Patches `fs` so that `dir` behaves as a file system of `capacity` bytes. */
function install({ dir, capacity }) {
  const root = resolve(dir);
  const under = (p) => {
    const abs = pathOf(p);
    return abs === root || abs.startsWith(root + sep);
  };

  let walked = 0;
  let walkedAt = -Infinity;
  /** Bytes handed to writes that have not settled. */
  let inflight = 0;
  /** Bytes written by writes settled since the last walk: the next walk sees them. */
  let sinceWalk = 0;
  const used = () => {
    const age = performance.now() - walkedAt;
    // A walk while a write is in flight may see some of its bytes, which are also counted in
    // `inflight`: walk when no write is, unless writes have kept the walk from running for long
    // (then the double count is transient and errs on the full side).
    if ((age >= WALK_MS && inflight === 0) || age >= WALK_BUSY_MS) {
      walked = usedBytes(root);
      walkedAt = performance.now();
      sinceWalk = 0;
    }
    return walked + inflight + sinceWalk;
  };
  const free = () => Math.max(0, capacity - used());

  /**
   * Reserves up to `wanted` bytes synchronously (so concurrent writes cannot overbook), runs
   * `write(granted)` and settles the reservation. Every write is counted as growth, which is what
   * appends are; an overwrite is counted until the next walk corrects it.
   */
  async function reserved(wanted, write) {
    const granted = Math.min(wanted, free());
    if (wanted > 0 && granted === 0) {
      throw enospc();
    }
    inflight += granted;
    let written = 0;
    try {
      const result = await write(granted);
      written = result.bytesWritten;
      return result;
    } finally {
      inflight -= granted;
      sinceWalk += written;
    }
  }

  const handles = new WeakSet();
  let patched = false;
  const patchFileHandle = (proto) => {
    patched = true;
    const { write, writev } = proto;
    proto.write = function (data, ...rest) {
      if (!handles.has(this)) {
        return write.call(this, data, ...rest);
      }
      if (typeof data === 'string' || (rest[0] !== null && typeof rest[0] === 'object')) {
        // The string and options forms (not used under the directory) are charged whole.
        const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
        return reserved(bytes, (granted) =>
          granted < bytes ? Promise.reject(enospc()) : write.call(this, data, ...rest),
        );
      }
      const [offset = 0, length = data.byteLength - offset, position = null] = rest;
      return reserved(length, (granted) => write.call(this, data, offset, granted, position));
    };
    proto.writev = function (buffers, position) {
      if (!handles.has(this)) {
        return writev.call(this, buffers, position);
      }
      const bytes = buffers.reduce((n, b) => n + b.byteLength, 0);
      return reserved(bytes, async (granted) => {
        const fitting = [];
        for (let left = granted, i = 0; left > 0; i++) {
          const b = buffers[i];
          fitting.push(b.byteLength <= left ? b : b.subarray(0, left));
          left -= Math.min(left, b.byteLength);
        }
        const { bytesWritten } = await writev.call(this, fitting, position);
        return { bytesWritten, buffers };
      });
    };
  };

  const { open } = fs.promises;
  fs.promises.open = async function (path, ...rest) {
    const handle = await open.call(this, path, ...rest);
    if (!patched) {
      patchFileHandle(Object.getPrototypeOf(handle));
    }
    if (under(path)) {
      handles.add(handle);
    }
    return handle;
  };

  /** The real answer for the path, with the emulated size and free space. */
  const emulated = (real, bigint) => {
    const n = bigint ? BigInt : Number;
    const bfree = Math.floor(free() / BSIZE);
    return Object.assign(real, {
      bsize: n(BSIZE),
      blocks: n(Math.floor(capacity / BSIZE)),
      bfree: n(bfree),
      bavail: n(bfree),
    });
  };
  const { statfs } = fs.promises;
  fs.promises.statfs = async function (path, options) {
    const real = await statfs.call(this, path, options);
    return under(path) ? emulated(real, options?.bigint) : real;
  };
  const { statfsSync } = fs;
  fs.statfsSync = function (path, options) {
    const real = statfsSync.call(this, path, options);
    return under(path) ? emulated(real, options?.bigint) : real;
  };
  const statfsCallback = fs.statfs;
  fs.statfs = function (path, options, callback) {
    const cb = typeof options === 'function' ? options : callback;
    const opts = typeof options === 'function' ? undefined : options;
    statfsCallback.call(this, path, opts ?? {}, (err, real) => {
      if (err || !under(path)) {
        cb(err, real);
        return;
      }
      let answer;
      try {
        answer = emulated(real, opts?.bigint);
      } catch (e) {
        cb(e);
        return;
      }
      cb(null, answer);
    });
  };
}

module.exports = { usedBytes, install, BSIZE };
