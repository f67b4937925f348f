import WebSocket from 'ws';
import type { SocketFactory } from './socket.js';

/** A refusal's JSON body is read up to this size; framegate's are far smaller. */
const MAX_REFUSAL_BODY = 4096;

/**
 * WebSockets in Node 20 through `ws`, which, unlike browsers, shows the status and body of a
 * refused upgrade, and can tell a refusal from a network failure.
 */
export const nodeSocketFactory: SocketFactory = {
  canSetHeaders: true,
  connect(url, protocol, headers, handlers) {
    const ws = new WebSocket(url, protocol, { headers, perMessageDeflate: false });
    // Exactly one of close/refused reaches the client.
    let ended = false;
    const end = (report: () => void) => {
      if (!ended) {
        ended = true;
        report();
      }
    };
    ws.on('open', () => handlers.open());
    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        // Text frames arrive as one Buffer (binaryType nodebuffer, no fragmentation option set).
        handlers.message((data as Buffer).toString('utf8'));
      }
    });
    ws.on('unexpected-response', (req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_REFUSAL_BODY) {
          chunks.push(chunk);
        }
      });
      const report = () =>
        end(() => {
          let error: string | null = null;
          try {
            const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: unknown };
            error = typeof body.error === 'string' ? body.error : null;
          } catch {
            // Not framegate's answer (a proxy's page): the status is all there is.
          }
          const retryAfter = Number(res.headers['retry-after']);
          handlers.refused(
            res.statusCode ?? 0,
            error,
            Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
          );
          req.destroy();
        });
      res.on('end', report);
      res.on('error', report);
    });
    // `close` always follows an error; the error itself says nothing the close code does not.
    ws.on('error', () => undefined);
    ws.on('close', (code, reason) => end(() => handlers.close(code, reason.toString('utf8'))));
    return {
      send: (data) => ws.send(data),
      close: (code, reason) => ws.close(code, reason),
      terminate: () => {
        ended = true;
        ws.terminate();
      },
    };
  },
};
