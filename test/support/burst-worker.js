// A client that sends pre-encoded media messages as fast as its window of unacknowledged frames
// allows, from a worker thread: its framing and masking then run beside the service's event loop,
// not on it, as a remote client's would (see burst-sender.ts).
const { parentPort, workerData } = require('node:worker_threads');
const WebSocket = require('ws');

const { url, token, open, messages, window: windowFrames } = workerData;
const ws = new WebSocket(url, ['framegate.v1'], {
  headers: { authorization: `Bearer ${token}` },
  perMessageDeflate: false,
});
let maxAck = 0;
let opened = false;
let wake = null;

ws.on('message', (data, isBinary) => {
  if (isBinary) {
    return;
  }
  const message = JSON.parse(data.toString());
  if (message.type === 'ack') {
    maxAck = Math.max(maxAck, message.seq);
  } else if (message.type === 'opened') {
    opened = true;
    parentPort.postMessage({ type: 'opened', sessionId: message.sessionId });
  } else if (message.type === 'closed') {
    parentPort.postMessage({ type: 'closed', closed: message });
  } else if (message.type === 'error') {
    parentPort.postMessage({ type: 'failed', error: JSON.stringify(message) });
  }
  if (message.type === 'opened' || message.type === 'ack') {
    wake?.();
  }
});
ws.on('close', (code) => parentPort.postMessage({ type: 'socket-closed', code }));
ws.on('error', (err) => parentPort.postMessage({ type: 'failed', error: String(err) }));

const until = (done) =>
  new Promise((resolve) => {
    const check = () => {
      if (done()) {
        wake = null;
        resolve();
      } else {
        wake = check;
      }
    };
    check();
  });

ws.on('open', async () => {
  ws.send(JSON.stringify({ type: 'open', ...open }));
  await until(() => opened);
  for (let i = 0; i < messages.length; i++) {
    await until(() => i + 1 - maxAck <= windowFrames);
    ws.send(Buffer.from(messages[i]));
  }
  await until(() => maxAck >= messages.length);
  parentPort.postMessage({ type: 'acked' });
});

parentPort.on('message', (message) => {
  if (message.type === 'close') {
    ws.send(JSON.stringify({ type: 'close' }));
  }
});
