import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PART_SIZE, expectedObject } from './recording-store';
import {
  MAX_RETRY_DELAY_MS,
  describeStorageError,
  judgeObject,
  retryDelayMs,
} from './upload-policy';

describe('retryDelayMs', () => {
  it('doubles from the base delay after each failed attempt', () => {
    expect([1, 2, 3, 4].map((n) => retryDelayMs(n, 30))).toEqual([
      30_000, 60_000, 120_000, 240_000,
    ]);
  });

  it('never waits more than an hour, however many attempts failed', () => {
    expect(retryDelayMs(12, 30)).toBe(MAX_RETRY_DELAY_MS);
    expect(retryDelayMs(10_000, 3_600)).toBe(MAX_RETRY_DELAY_MS);
  });
});

describe('judgeObject', () => {
  const expected = { bytes: 10, fullSha256: 'full=', compositeSha256: 'comp=-2' };

  it('refuses an object of another size, whatever its checksum', () => {
    expect(judgeObject({ size: 9, checksumSha256: 'full=' }, expected)).toEqual({
      kind: 'mismatch',
      reason: 'the object has 9 bytes, the file 10',
    });
    expect(judgeObject({ size: undefined, checksumSha256: undefined }, expected).kind).toBe(
      'mismatch',
    );
  });

  it("accepts the server's SHA-256 of a single upload or of a multipart one", () => {
    expect(judgeObject({ size: 10, checksumSha256: 'full=' }, expected)).toEqual({
      kind: 'verified',
    });
    expect(judgeObject({ size: 10, checksumSha256: 'comp=-2' }, expected)).toEqual({
      kind: 'verified',
    });
  });

  it('reads the object back when the server keeps no checksum or another one', () => {
    expect(judgeObject({ size: 10, checksumSha256: undefined }, expected).kind).toBe('read-back');
    expect(judgeObject({ size: 10, checksumSha256: 'other=-3' }, expected).kind).toBe('read-back');
  });
});

describe('expectedObject', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'fg-expected-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

  it('gives the whole-file SHA-256 and the composite of PART_SIZE parts, as S3 reports them', async () => {
    const data = Buffer.alloc(2 * PART_SIZE + 1234);
    for (let i = 0; i < data.length; i += 4096) {
      data[i] = (i / 4096) & 0xff;
    }
    const path = join(dir, 'three-parts.mp4');
    writeFileSync(path, data);
    const parts = [
      data.subarray(0, PART_SIZE),
      data.subarray(PART_SIZE, 2 * PART_SIZE),
      data.subarray(2 * PART_SIZE),
    ];
    const composite = createHash('sha256')
      .update(Buffer.concat(parts.map(sha)))
      .digest('base64');
    await expect(expectedObject(path)).resolves.toEqual({
      bytes: data.length,
      fullSha256: sha(data).toString('base64'),
      compositeSha256: `${composite}-3`,
      sha256Hex: sha(data).toString('hex'),
    });
  });

  it('counts a small file as one part', async () => {
    const path = join(dir, 'small.mp4');
    writeFileSync(path, Buffer.from('tiny'));
    const result = await expectedObject(path);
    expect(result.compositeSha256).toBe(
      `${createHash('sha256')
        .update(sha(Buffer.from('tiny')))
        .digest('base64')}-1`,
    );
  });
});

describe('describeStorageError', () => {
  it("names the S3 error code, the HTTP status and the server's message", () => {
    const err = Object.assign(new Error('The AWS Access Key Id you provided does not exist'), {
      name: 'InvalidAccessKeyId',
      Code: 'InvalidAccessKeyId',
      $metadata: { httpStatusCode: 403 },
    });
    expect(describeStorageError(err)).toBe(
      'InvalidAccessKeyId (HTTP 403): The AWS Access Key Id you provided does not exist',
    );
  });

  it('names a network error by its code', () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), {
      code: 'ECONNREFUSED',
    });
    expect(describeStorageError(err)).toBe('ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9');
  });
});
