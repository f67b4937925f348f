import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { call } from './support/app';
import { testDir } from './support/dirs';
import { framesBody, postFrames } from './support/frames-body';
import { ServiceProcess } from './support/service-process';
import { payloadFor, rejectedHandshake, StreamClient } from './support/stream-client';
import { createTestDatabase, dropTestDatabase } from './support/test-db';
import { hsToken, TEST_SECRET } from './support/tokens';

/**
 * Every credential the protocol carries (bearer tokens, tickets in WebSocket URLs, resume tokens in
 * messages, bodies and headers; good, bad and expired) goes through the service at the most
 * verbose log level, and none of them may appear in its output or in any answer's error body.
 */
describe('credentials never reach logs or error bodies', () => {
  let cwd: string;
  let databaseUrl: string;
  let service: ServiceProcess;
  let url: string;

  beforeAll(async () => {
    cwd = testDir('log-secrets');
    databaseUrl = await createTestDatabase();
    service = new ServiceProcess(
      {
        NODE_ENV: 'test',
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'trace',
        DATA_DIR: join(cwd, 'data'),
        DATABASE_URL: databaseUrl,
        AUTH_JWT_SECRET: TEST_SECRET,
        RECORDING_CAPACITY_FPS: '1000000',
      },
      cwd,
    );
    url = await service.listening();
  });
  afterAll(async () => {
    await service.stop('SIGTERM');
    await dropTestDatabase(databaseUrl);
    rmSync(cwd, { recursive: true, force: true });
  });

  it('keeps tokens, tickets and resume tokens out of every log line and error body', async () => {
    const secrets: string[] = [];
    const bodies: string[] = [];
    const token = hsToken({ sub: 'alice', channel: 'branch-app' });
    const expired = hsToken({ sub: 'alice', channel: 'branch-app', expiresIn: -60 });
    const forged = `${token.slice(0, -4)}AAAA`;
    secrets.push(token, expired, forged);

    // A ticket, used once over WebSocket (in the URL), then replayed. The request carries its
    // own id, which the answer echoes and the request's log line names.
    const issued = await call(url, 'POST', '/v1/tickets', {
      token,
      headers: { 'x-request-id': 'req-log-secrets-1' },
    });
    expect(issued.status).toBe(201);
    expect(issued.headers.get('x-request-id')).toBe('req-log-secrets-1');
    const generated = await call(url, 'POST', '/v1/tickets', { token: forged });
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const ticket = issued.body.ticket as string;
    secrets.push(ticket);
    const viaTicket = await StreamClient.connect(url, { ticket });
    const opened = await viaTicket.open({ video: { width: 320, height: 240, fps: 5 } });
    secrets.push(opened.resumeToken);
    viaTicket.sendFrame(1, 100, payloadFor(1));
    await viaTicket.acksUntil(1);
    viaTicket.ws.terminate();
    const replayed = await rejectedHandshake(url, { ticket });
    expect(replayed.status).toBe(401);
    bodies.push(JSON.stringify(replayed.body));

    // Resume with the right token, then with a wrong one.
    const resumer = await StreamClient.connect(url, { token });
    resumer.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: opened.resumeToken });
    await resumer.next('opened');
    resumer.ws.terminate();
    const wrongResume = `${opened.resumeToken.slice(0, -4)}zzzz`;
    secrets.push(wrongResume);
    const guesser = await StreamClient.connect(url, { token });
    guesser.send({ type: 'resume', sessionId: opened.sessionId, resumeToken: wrongResume });
    const refusedResume = await guesser.closed;
    expect(refusedResume.code).toBe(4004);
    bodies.push(refusedResume.reason);

    // Bad and expired bearer tokens, over WebSocket and REST.
    for (const bad of [expired, forged]) {
      const ws = await rejectedHandshake(url, { token: bad });
      expect(ws.status).toBe(401);
      bodies.push(JSON.stringify(ws.body));
      const rest = await call(url, 'POST', '/v1/sessions', { token: bad, body: {} });
      expect(rest.status).toBe(401);
      bodies.push(JSON.stringify(rest.body));
    }
    const badTicket = await rejectedHandshake(url, { ticket: 'not-a-ticket-0123456789' });
    bodies.push(JSON.stringify(badTicket.body));
    secrets.push('not-a-ticket-0123456789');

    // The HTTP fallback: a resume token in the header, right and wrong.
    const created = await call(url, 'POST', '/v1/sessions', {
      token,
      body: { video: { width: 320, height: 240, fps: 5 } },
    });
    expect(created.status).toBe(201);
    const fallback = created.body as { sessionId: string; resumeToken: string };
    secrets.push(fallback.resumeToken);
    const stored = await postFrames(
      url,
      fallback.sessionId,
      token,
      fallback.resumeToken,
      framesBody(1, 3),
    );
    expect(stored.status).toBe(200);
    const wrongHeader = `${fallback.resumeToken.slice(0, -4)}yyyy`;
    secrets.push(wrongHeader);
    const refused = await postFrames(url, fallback.sessionId, token, wrongHeader, framesBody(4, 5));
    expect(refused.status).toBeGreaterThanOrEqual(400);
    bodies.push(JSON.stringify(refused.body));

    const exit = await service.stop('SIGTERM');
    expect(exit.code).toBe(0);
    const output = exit.stdout + exit.stderr;
    // The run did log: requests, handshakes and stream events at trace level.
    expect(output.split('\n').length).toBeGreaterThan(20);
    expect(output).toMatch(/"req":\{"id":"req-log-secrets-1"/);
    // Stream events name their connection and session.
    const closedLines = output.split('\n').filter((l) => l.includes('"msg":"connection closed"'));
    expect(closedLines.some((l) => l.includes(`"sessionId":"${opened.sessionId}"`))).toBe(true);
    expect(closedLines.every((l) => /"connectionId":"[0-9a-f-]{36}"/.test(l))).toBe(true);
    for (const secret of secrets) {
      expect(output).not.toContain(secret);
      for (const body of bodies) {
        expect(body).not.toContain(secret);
      }
    }
    // Nor the part of a JWT that carries its signature, on its own.
    for (const jwt of [token, expired, forged]) {
      expect(output).not.toContain(jwt.split('.')[2]);
    }
  });
});
