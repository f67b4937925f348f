/**
 * The upload of a ready recording to S3-compatible storage, as the `recordings` row records it:
 *
 *   (null) ──claim──▶ uploading ──upload, verify──▶ (storage = s3) ──unlink──▶ uploaded
 *                        │   ▲                                                (path null)
 *               failure  ▼   │ retry_at passed
 *                      pending (upload_error, upload_attempts)
 *
 * `storage` turns to `s3` only after the object was verified, and the local path is cleared only
 * after the file is unlinked, so a crash between any two steps leaves a row that the next claim
 * finishes: never a row whose only copy is gone.
 */
export const UPLOAD_STATES = ['pending', 'uploading', 'uploaded'] as const;
export type UploadState = (typeof UPLOAD_STATES)[number];

export const STORAGES = ['local', 's3'] as const;
export type Storage = (typeof STORAGES)[number];

/** Retries wait at most this long, however many attempts failed. */
export const MAX_RETRY_DELAY_MS = 3_600_000;

/**
 * The wait before the next attempt after `attempts` failed ones: doubling from the base, capped
 * at an hour, so a long S3 outage costs one request per recording an hour.
 */
export function retryDelayMs(attempts: number, baseS: number): number {
  const exponent = Math.min(Math.max(attempts - 1, 0), 20);
  return Math.min(baseS * 1000 * 2 ** exponent, MAX_RETRY_DELAY_MS);
}

/** What the object in storage looks like, from HeadObject. */
export interface StoredObject {
  size: number | undefined;
  /** `ChecksumSHA256` (base64), present when the server keeps flexible checksums. */
  checksumSha256: string | undefined;
}

/** What the local file is: its size and checksums as S3 would report them. */
export interface ExpectedObject {
  bytes: number;
  /** base64 sha256 of the whole file (a single PutObject). */
  fullSha256: string;
  /** base64 sha256 of the parts' sha256s, then `-<parts>` (a multipart upload). */
  compositeSha256: string;
}

export type Verdict =
  | { kind: 'verified' }
  | { kind: 'mismatch'; reason: string }
  /** Size matches but the server keeps no checksum: the object must be read back and hashed. */
  | { kind: 'read-back' };

/** Judges a stored object against the local file, from its HeadObject answer alone. */
export function judgeObject(head: StoredObject, expected: ExpectedObject): Verdict {
  if (head.size !== expected.bytes) {
    return {
      kind: 'mismatch',
      reason: `the object has ${head.size ?? 'no'} bytes, the file ${expected.bytes}`,
    };
  }
  if (head.checksumSha256 === undefined) {
    return { kind: 'read-back' };
  }
  if (
    head.checksumSha256 === expected.fullSha256 ||
    head.checksumSha256 === expected.compositeSha256
  ) {
    return { kind: 'verified' };
  }
  // A server may combine part checksums its own way: reading the object back settles it.
  return { kind: 'read-back' };
}

/** A storage error as one line for the row and the log: the S3 error code and its message. */
export function describeStorageError(err: unknown): string {
  if (!(err instanceof Error)) {
    return String(err);
  }
  const code = (err as { Code?: unknown; code?: unknown }).Code ?? (err as { code?: unknown }).code;
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const name = typeof code === 'string' ? code : err.name;
  const parts = [name];
  if (status !== undefined) {
    parts.push(`(HTTP ${status})`);
  }
  if (err.message && err.message !== name) {
    parts.push(`: ${err.message}`);
  }
  return parts.join(' ').replace(' :', ':').slice(0, 1_000);
}
