/**
 * Where recordings go on S3-compatible storage, from RECORDINGS_S3_URL:
 * - `s3://bucket/prefix`: AWS S3 (virtual-hosted addressing). The endpoint is the SDK's own
 *   choice, so the standard `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` still apply.
 * - `http(s)://host[:port]/bucket/prefix`: an S3-compatible server (MinIO, Ceph RGW, Garage,
 *   s3rver) at that endpoint, addressed path-style, which such servers serve without wildcard DNS.
 *
 * A recording's object key is `<prefix><session id>.mp4`.
 *
 * Credentials never go in the URL: they come from the SDK's default provider chain
 * (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profiles, web identity, instance roles).
 */
export interface S3Location {
  bucket: string;
  /** Key prefix, empty or ending with `/`. */
  prefix: string;
  /** Null: the SDK resolves the endpoint (AWS, or AWS_ENDPOINT_URL_S3). */
  endpoint: string | null;
  forcePathStyle: boolean;
}

/** S3's bucket naming rules (the DNS-compatible subset every S3-compatible server accepts). */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses RECORDINGS_S3_URL; throws an Error whose message says what is wrong. */
export function parseS3Url(value: string): S3Location {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error('must be s3://bucket/prefix or http(s)://host:port/bucket/prefix');
  }
  if (url.username || url.password) {
    throw new Error('must not carry credentials: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  }
  if (url.search || url.hash) {
    throw new Error('must have no query or fragment');
  }
  let bucket: string;
  let rest: string[];
  let endpoint: string | null;
  if (url.protocol === 's3:') {
    bucket = url.hostname;
    rest = url.pathname.split('/');
    endpoint = null;
  } else if (url.protocol === 'http:' || url.protocol === 'https:') {
    const [, first = '', ...more] = url.pathname.split('/');
    bucket = decodeURIComponent(first);
    rest = more;
    endpoint = `${url.protocol}//${url.host}`;
  } else {
    throw new Error('must be s3://bucket/prefix or http(s)://host:port/bucket/prefix');
  }
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw new Error(`"${bucket}" is not a valid bucket name (3-63 of a-z 0-9 . -)`);
  }
  // URL parsing already removed `.` and `..` segments.
  const segments = rest.map((s) => decodeURIComponent(s)).filter((s) => s !== '');
  return {
    bucket,
    prefix: segments.length === 0 ? '' : `${segments.join('/')}/`,
    endpoint,
    forcePathStyle: endpoint !== null,
  };
}
