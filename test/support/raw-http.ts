import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Body bytes the client had handed to its socket when the first byte of the response came. */
  sentWhenAnswered: number;
  /** Body bytes handed to the socket in all. */
  sent: number;
  /** The server closed the connection (rather than keeping it alive after the response). */
  closedByServer: boolean;
}

export interface RawRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  /** Declared in Content-Length. */
  bodyLength?: number;
  /** Body chunks in order; null: nothing more to send (short of `bodyLength`: the body stalls). */
  nextChunk?: () => Buffer | null;
  timeoutMs?: number;
}

/**
 * One HTTP/1.1 request on a raw socket, so a test controls exactly what is sent and when (a body
 * that stalls, one far larger than anything the server should read) and sees exactly when the
 * answer came. It settles on every path: a full response, the server closing or resetting the
 * socket (then with what came before), or the timeout (then rejects), and always destroys its
 * socket. Writing stops as soon as the response begins.
 */
export function rawRequest(base: string, request: RawRequest): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    let received = Buffer.alloc(0);
    let sent = 0;
    let sentWhenAnswered = -1;
    let head: { status: number; headers: Record<string, string>; bodyStart: number } | null = null;
    let settled = false;
    const finish = (closedByServer: boolean): void => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (!head) {
        reject(new Error(`connection closed with no response (${sent} body bytes sent)`));
        return;
      }
      resolve({
        status: head.status,
        headers: head.headers,
        body: received.subarray(head.bodyStart).toString(),
        sentWhenAnswered,
        sent,
        closedByServer,
      });
    };
    const timer = setTimeout(() => {
      settled = true;
      socket.destroy();
      reject(new Error(`no complete response within ${request.timeoutMs ?? 30_000} ms`));
    }, request.timeoutMs ?? 30_000);
    const pump = (): void => {
      while (!settled && sentWhenAnswered < 0 && !socket.destroyed) {
        const chunk = request.nextChunk?.() ?? null;
        if (chunk === null) {
          return;
        }
        sent += chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    socket.on('connect', () => {
      const headers: Record<string, string> = { host: url.host, ...request.headers };
      if (request.bodyLength !== undefined) {
        headers['content-length'] = String(request.bodyLength);
      }
      const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
      socket.write(`${request.method} ${request.path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`);
      pump();
    });
    socket.on('data', (data: Buffer) => {
      if (sentWhenAnswered < 0) {
        sentWhenAnswered = sent;
      }
      received = Buffer.concat([received, data]);
      if (!head) {
        const end = received.indexOf('\r\n\r\n');
        if (end < 0) {
          return;
        }
        const [statusLine, ...headerLines] = received.subarray(0, end).toString().split('\r\n');
        const headers: Record<string, string> = {};
        for (const line of headerLines) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        head = { status: Number(statusLine.split(' ')[1]), headers, bodyStart: end + 4 };
      }
      const length = Number(head.headers['content-length'] ?? NaN);
      // A complete response on a kept-alive connection ends here; one that says
      // `Connection: close` ends when the server does close (else the timeout fails the test).
      if (received.length - head.bodyStart >= length && head.headers.connection !== 'close') {
        finish(false);
      }
    });
    socket.on('end', () => finish(true));
    // A reset after the response (the server destroyed a socket with unread body) is a close.
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
  });
}
