import type { SocketFactory } from './socket.js';

/**
 * WebSockets in browsers. They cannot set headers (the client gets a ticket) and hide why an
 * upgrade failed: a connection that never opens is reported as refused with status 0, and the
 * client falls back to HTTP.
 */
export const browserSocketFactory: SocketFactory = {
  canSetHeaders: false,
  connect(url, protocol, _headers, handlers) {
    const ws = new WebSocket(url, protocol);
    let opened = false;
    let ended = false;
    ws.onopen = () => {
      opened = true;
      handlers.open();
    };
    ws.onmessage = (event: MessageEvent) => {
      if (typeof event.data === 'string') {
        handlers.message(event.data);
      }
    };
    ws.onclose = (event: CloseEvent) => {
      if (ended) {
        return;
      }
      ended = true;
      if (opened) {
        handlers.close(event.code, event.reason);
      } else {
        handlers.refused(0, null, null);
      }
    };
    return {
      send: (data) => ws.send(data),
      close: (code, reason) => ws.close(code, reason),
      terminate: () => {
        ended = true;
        ws.close();
      },
    };
  },
};
