/** The part of busboy 1.x (multipart/form-data parser) that framegate uses; it ships no types. */
declare module 'busboy' {
  import type { IncomingHttpHeaders } from 'node:http';
  import type { Readable, Writable } from 'node:stream';

  namespace busboy {
    interface Limits {
      fieldNameSize?: number;
      fieldSize?: number;
      fields?: number;
      fileSize?: number;
      files?: number;
      parts?: number;
      headerPairs?: number;
    }

    interface Config {
      headers: IncomingHttpHeaders;
      limits?: Limits;
      highWaterMark?: number;
      fileHwm?: number;
    }

    interface FieldInfo {
      nameTruncated: boolean;
      valueTruncated: boolean;
      encoding: string;
      mimeType: string;
    }

    interface FileInfo {
      filename: string | undefined;
      encoding: string;
      mimeType: string;
    }

    /** A file part: emits `limit` when it reaches `limits.fileSize` (the rest is dropped). */
    type FileStream = Readable & { truncated?: boolean };

    interface Busboy extends Writable {
      on(event: 'field', listener: (name: string, value: string, info: FieldInfo) => void): this;
      on(event: 'file', listener: (name: string, stream: FileStream, info: FileInfo) => void): this;
      on(event: 'filesLimit' | 'fieldsLimit' | 'partsLimit', listener: () => void): this;
      on(event: 'error', listener: (err: Error) => void): this;
      on(event: string, listener: (...args: unknown[]) => void): this;
    }
  }

  function busboy(config: busboy.Config): busboy.Busboy;
  export = busboy;
}
