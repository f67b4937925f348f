import { Logger } from '@nestjs/common';
import { startTestApp, type TestApp } from './support/app';
import {
  Canary,
  expectAcksTimely,
  expectRecordingComplete,
  expectResourcesBack,
  resources,
} from './support/canary';
import { nodeState } from './support/node-state';
import { rejectedHandshake, StreamClient } from './support/stream-client';
import { hsToken, keyToken, noneToken, rsaKey } from './support/tokens';
import { waitFor } from './support/wait';

/**
 * Issue 10 item 6, WebSocket side: deep JSON, the bearer scheme's case and the 401 wording, each
 * beside a canary.
 */
describe('abuse: WebSocket input', () => {
  let app: TestApp;
  const token = hsToken({ sub: 'mallory', channel: 'input' });

  beforeAll(async () => {
    app = await startTestApp({
      env: {
        ACK_INTERVAL_MS: '500',
        QUOTA_IP_HANDSHAKES_PER_MIN: '100000',
        QUOTA_HANDSHAKES_PER_MIN: '100000',
      },
    });
  });
  afterAll(async () => {
    await app.close();
  });

  it('refuses JSON nested 5000 deep with 4000 and no error log; takes `bearer` in any case; words 401s plainly; the canary unharmed', async () => {
    const canary = await Canary.start(app.url);
    await waitFor(() => canary.sent >= 30, 30_000, 'canary warm');
    canary.mark();
    const baseline = resources();
    await waitFor(() => canary.sent >= 60, 30_000, 'canary alone');
    const alone = canary.mark();
    // Every error-level log line of the node goes through a Nest logger or the root pino logger.
    const nestErrors = jest.spyOn(Logger.prototype, 'error');
    const pinoErrors = jest.spyOn(app.started.logger, 'error');

    // Deep JSON, as an open message and as a bare array, several times over.
    const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    for (let i = 0; i < 20; i++) {
      const client = await StreamClient.connect(app.url, { token });
      client.ws.send(
        i % 2 === 0
          ? deep(5_000)
          : `{"type":"open","video":{"width":320,"height":240,"fps":10,"x":${deep(5_000)}}}`,
      );
      expect((await client.closed).code).toBe(4000);
    }

    // The bearer scheme is case-insensitive (RFC 7235).
    for (const scheme of ['bearer', 'BEARER', 'bEaReR']) {
      const client = await StreamClient.connect(app.url, {
        headers: { authorization: `${scheme} ${token}` },
      });
      const opened = await client.open();
      expect(opened.sessionId).toBeTruthy();
      client.send({ type: 'close' });
      await client.next('closed');
      await client.closed;
    }

    // Bad tokens get a 401 in the HTTP side's words, never the verifier library's.
    for (const bad of [
      noneToken(),
      keyToken(rsaKey('k')),
      `${token}x`,
      hsToken({ expiresIn: -60 }),
      'not.a.jwt',
    ]) {
      const refused = await rejectedHandshake(app.url, { token: bad });
      expect(refused.status).toBe(401);
      expect(refused.body.error).toBe('invalid_token');
      expect(String(refused.body.message)).not.toMatch(/secret or public key callback|callback/i);
    }
    const beside = canary.mark();
    expect(nestErrors).not.toHaveBeenCalled();
    expect(pinoErrors).not.toHaveBeenCalled();
    nestErrors.mockRestore();
    pinoErrors.mockRestore();

    expectAcksTimely(alone, beside);
    const { closedFrames } = await canary.stop();
    expect(closedFrames).toBe(canary.sent);
    await expectRecordingComplete(app.db, canary.sessionId, canary.sent);
    await waitFor(
      async () => {
        const state = await nodeState(app);
        return state.quota.node === 0 && state.connectionsMetric === 0;
      },
      15_000,
      'connections and slots given back',
    );
    await expectResourcesBack(baseline, 0.1);
  }, 120_000);
});
