import { parseS3Url } from './s3-url';

describe('parseS3Url', () => {
  it('reads s3://bucket/prefix as AWS, with the endpoint left to the SDK', () => {
    expect(parseS3Url('s3://framegate-recordings/prod/eu')).toEqual({
      bucket: 'framegate-recordings',
      prefix: 'prod/eu/',
      endpoint: null,
      forcePathStyle: false,
    });
  });

  it('reads http(s)://host:port/bucket/prefix as a path-style endpoint', () => {
    expect(parseS3Url('http://127.0.0.1:9000/recordings/node-a/')).toEqual({
      bucket: 'recordings',
      prefix: 'node-a/',
      endpoint: 'http://127.0.0.1:9000',
      forcePathStyle: true,
    });
    expect(parseS3Url('https://minio.internal/recordings')).toEqual({
      bucket: 'recordings',
      prefix: '',
      endpoint: 'https://minio.internal',
      forcePathStyle: true,
    });
  });

  it('collapses repeated slashes and dot segments in the prefix', () => {
    expect(parseS3Url('s3://bucket-a//a///b/').prefix).toBe('a/b/');
    expect(parseS3Url('s3://bucket-a/a/../b/./c').prefix).toBe('b/c/');
    expect(parseS3Url('s3://bucket-a').prefix).toBe('');
  });

  it.each([
    ['ftp://host/bucket', /s3:\/\/bucket/],
    ['not a url', /s3:\/\/bucket/],
    ['http://key:secret@host/bucket', /credentials/],
    ['s3://bucket-a/p?x=1', /query/],
    ['s3://Bucket_A/p', /bucket name/],
    ['s3://ab/p', /bucket name/],
    ['http://host:9000/', /bucket name/],
  ])('refuses %s', (value, message) => {
    expect(() => parseS3Url(value)).toThrow(message);
  });
});
