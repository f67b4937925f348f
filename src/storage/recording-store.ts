import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { parseS3Url, type S3Location } from './s3-url';
import { type ExpectedObject, judgeObject } from './upload-policy';

/**
 * Multipart part size: S3's minimum is 5 MiB; 8 MiB keeps a one-hour recording well under the
 * 10 000 parts limit while two parts in flight hold at most 16 MiB of memory.
 */
export const PART_SIZE = 8 * 1024 * 1024;
/** Parts uploaded at once: the upload is background work and must leave bandwidth to ingest. */
const QUEUE_SIZE = 2;
/** A storage server that does not answer within this long is treated as down. */
const CONNECT_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 60_000;

/** How an uploaded object was found equal to the file. */
export type VerifiedBy = 'checksum' | 'read-back';

/**
 * The S3 side of recordings, behind one injectable: upload (multipart, bounded memory), verify,
 * ranged reads, download into a job, delete, presign. Inert (`enabled` false) without
 * RECORDINGS_S3_URL.
 */
@Injectable()
export class RecordingStore implements OnModuleDestroy {
  readonly enabled: boolean;
  private readonly location: S3Location | null;
  private readonly client: S3Client | null;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.location = config.RECORDINGS_S3_URL ? parseS3Url(config.RECORDINGS_S3_URL) : null;
    this.enabled = this.location !== null;
    this.client = this.location ? makeClient(this.location) : null;
  }

  onModuleDestroy(): void {
    this.client?.destroy();
  }

  /** What every key starts with (`<prefix><session id>.mp4`): empty or ending with `/`. */
  get keyPrefix(): string {
    return this.need().location.prefix;
  }

  /** Uploads a file (multipart above PART_SIZE), asking the server to keep SHA-256 checksums. */
  async upload(path: string, key: string, signal: AbortSignal): Promise<void> {
    const { client, location } = this.need();
    const upload = new Upload({
      client,
      params: {
        Bucket: location.bucket,
        Key: key,
        Body: createReadStream(path),
        ContentType: 'video/mp4',
        ChecksumAlgorithm: 'SHA256',
      },
      queueSize: QUEUE_SIZE,
      partSize: PART_SIZE,
      leavePartsOnError: false,
    });
    const abort = (): void => void upload.abort().catch(() => undefined);
    signal.addEventListener('abort', abort, { once: true });
    try {
      await upload.done();
    } finally {
      signal.removeEventListener('abort', abort);
    }
  }

  /**
   * Checks the stored object against the local file: its size (HeadObject), then its SHA-256,
   * from the server's flexible checksum when it keeps one, else by reading the object back and
   * hashing it. Resolves with how it was verified; rejects with the difference found.
   */
  async verify(
    key: string,
    expected: ExpectedObject & { sha256Hex: string },
    signal: AbortSignal,
  ): Promise<VerifiedBy> {
    const { client, location } = this.need();
    const head = await client.send(
      new HeadObjectCommand({ Bucket: location.bucket, Key: key, ChecksumMode: 'ENABLED' }),
      { abortSignal: signal },
    );
    const verdict = judgeObject(
      { size: head.ContentLength, checksumSha256: head.ChecksumSHA256 },
      expected,
    );
    switch (verdict.kind) {
      case 'verified':
        return 'checksum';
      case 'mismatch':
        throw new Error(`the uploaded object differs from the file: ${verdict.reason}`);
      case 'read-back': {
        const hash = createHash('sha256');
        await pipeline(await this.read(key, null, signal), hash);
        const actual = hash.digest('hex');
        if (actual !== expected.sha256Hex) {
          throw new Error(
            `the uploaded object differs from the file: sha256 ${actual}, the file ${expected.sha256Hex}`,
          );
        }
        return 'read-back';
      }
    }
  }

  /** The object's bytes `start..end` (inclusive), or all of it. */
  async read(
    key: string,
    span: { start: number; end: number } | null,
    signal: AbortSignal,
  ): Promise<Readable> {
    const { client, location } = this.need();
    const answer = await client.send(
      new GetObjectCommand({
        Bucket: location.bucket,
        Key: key,
        Range: span ? `bytes=${span.start}-${span.end}` : undefined,
      }),
      { abortSignal: signal },
    );
    if (!answer.Body) {
      throw new Error(`GetObject of ${key} returned no body`);
    }
    return answer.Body as Readable;
  }

  /** Copies the object into a local file (a media job's input). */
  async download(key: string, target: string, signal: AbortSignal): Promise<void> {
    await pipeline(await this.read(key, null, signal), createWriteStream(target, { flags: 'wx' }));
  }

  /** Deletes the object; deleting one already gone succeeds, as in S3. */
  async delete(key: string): Promise<void> {
    const { client, location } = this.need();
    await client.send(new DeleteObjectCommand({ Bucket: location.bucket, Key: key }));
  }

  /** A GET URL valid for `ttlS` seconds, answering with the recording's type and file name. */
  presign(key: string, filename: string, ttlS: number): Promise<string> {
    const { client, location } = this.need();
    return getSignedUrl(
      client,
      new GetObjectCommand({
        Bucket: location.bucket,
        Key: key,
        ResponseContentType: 'video/mp4',
        ResponseContentDisposition: `inline; filename="${filename}"`,
      }),
      { expiresIn: ttlS },
    );
  }

  private need(): { client: S3Client; location: S3Location } {
    if (!this.client || !this.location) {
      throw new Error('RECORDINGS_S3_URL is not set');
    }
    return { client: this.client, location: this.location };
  }
}

function makeClient(location: S3Location): S3Client {
  return new S3Client({
    ...(location.endpoint ? { endpoint: location.endpoint } : {}),
    forcePathStyle: location.forcePathStyle,
    // S3-compatible servers mostly ignore the region, but SigV4 needs one; AWS_REGION (read by
    // the SDK itself) wins when it is set.
    ...(location.endpoint && !process.env.AWS_REGION ? { region: 'us-east-1' } : {}),
    // Checksums are asked for explicitly (SHA-256 on upload); the SDK's default CRC32 on every
    // request, sent as aws-chunked trailers, is not understood by every S3-compatible server.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS },
  });
}

/**
 * The checksums S3 would report for `path` uploaded in PART_SIZE parts: the whole file's SHA-256
 * (a single PutObject) and the composite of the parts' (a multipart upload), with its sha256 hex.
 */
export async function expectedObject(
  path: string,
): Promise<ExpectedObject & { sha256Hex: string }> {
  const full = createHash('sha256');
  const partDigests: Buffer[] = [];
  let part = createHash('sha256');
  let inPart = 0;
  let bytes = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    full.update(chunk);
    bytes += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(PART_SIZE - inPart, chunk.length - offset);
      part.update(chunk.subarray(offset, offset + take));
      inPart += take;
      offset += take;
      if (inPart === PART_SIZE) {
        partDigests.push(part.digest());
        part = createHash('sha256');
        inPart = 0;
      }
    }
  }
  if (inPart > 0 || partDigests.length === 0) {
    partDigests.push(part.digest());
  }
  const fullDigest = full.digest();
  const composite = createHash('sha256').update(Buffer.concat(partDigests)).digest('base64');
  return {
    bytes,
    fullSha256: fullDigest.toString('base64'),
    compositeSha256: `${composite}-${partDigests.length}`,
    sha256Hex: fullDigest.toString('hex'),
  };
}
