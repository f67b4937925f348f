import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestApp, type TestApp } from './support/app';
import {
  Canary,
  type CanaryPhase,
  expectAcksTimely,
  expectRecordingComplete,
  expectResourcesBack,
  resources,
  type Resources,
} from './support/canary';
import { testDir } from './support/dirs';
import type { ServerMessage } from '../src/protocol/messages';
import { StreamClient } from './support/stream-client';
import { hsToken } from './support/tokens';
import { waitFor } from './support/wait';

/** Issue 10, item 4: costly images must not stall other sessions. */

const ATTACKERS = 4;
const ATTACK_FPS = 15;

/**
 * A 6000×6000 PNG of about 115 KB (under the 16 Mbit/s bandwidth quota at 15 fps) that costs
 * about 0.15–0.3 s to decode, as in the issue. Made in a child process, so the memory sharp takes
 * to draw it is not in this process's baseline.
 */
function costlyPng(): Buffer {
  const path = join(testDir('abuse-images'), 'costly.png');
  const script = `
    const sharp = require(${JSON.stringify(require.resolve('sharp'))});
    sharp({ create: { width: 6000, height: 6000, channels: 3, background: '#285aa0' } })
      .png({ compressionLevel: 9 })
      .toFile(${JSON.stringify(path)})
      .catch((err) => { console.error(err); process.exit(1); });`;
  execFileSync(process.execPath, ['-e', script]);
  return readFileSync(path);
}

/** A client that sends the same costly image at ATTACK_FPS until told to stop or closed. */
class Attacker {
  sent = 0;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly client: StreamClient,
    readonly sessionId: string,
    readonly resumeToken: string,
  ) {}

  static async start(base: string, i: number, declared: number, png: Buffer): Promise<Attacker> {
    const client = await StreamClient.connect(base, {
      token: hsToken({ sub: `attacker-${i}`, channel: 'attack' }),
    });
    const opened = await client.open({
      video: { width: declared, height: declared, fps: ATTACK_FPS },
    });
    const attacker = new Attacker(client, opened.sessionId, opened.resumeToken);
    // Ignores every `flow`: it sends at its own pace until the server closes it.
    attacker.timer = setInterval(() => {
      if (client.ws.readyState !== client.ws.OPEN) {
        clearInterval(attacker.timer);
        return;
      }
      attacker.sent++;
      client.sendFrame(attacker.sent, Math.round(((attacker.sent - 1) * 1000) / ATTACK_FPS), png);
    }, 1000 / ATTACK_FPS);
    return attacker;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** `close` on a fresh connection (after the server closed this one), waiting for `closed`. */
  async closeSession(base: string, i: number): Promise<number> {
    let client = this.client;
    if (client.ws.readyState !== client.ws.OPEN) {
      client = await StreamClient.connect(base, {
        token: hsToken({ sub: `attacker-${i}`, channel: 'attack' }),
      });
      client.send({ type: 'resume', sessionId: this.sessionId, resumeToken: this.resumeToken });
      await client.next('opened');
    }
    client.send({ type: 'close' });
    // The recorder works through everything stored within the session's image budget first.
    const closed = await client.next('closed', 150_000);
    await client.closed;
    return closed.frames;
  }
}

describe('costly images beside a canary', () => {
  let app: TestApp;
  let png: Buffer;
  let canary: Canary;
  let baseline: Resources;
  let alone: CanaryPhase;
  let canaryStopped = false;
  let attackers: Attacker[] = [];

  beforeAll(() => {
    png = costlyPng();
  });

  afterEach(async () => {
    // After a failure part-way: nothing keeps sending, then the node goes.
    attackers.forEach((a) => {
      a.stop();
      a.client.close();
    });
    attackers = [];
    if (canary && !canaryStopped) {
      await canary.stop().catch(() => undefined);
    }
    await app.close();
  });

  /** Starts the node and the canary: a warm phase, the resources baseline, then the alone phase. */
  const startWithCanary = async (env: Record<string, string>) => {
    app = await startTestApp({ env: { ACK_INTERVAL_MS: '500', ...env } });
    canary = await Canary.start(app.url);
    canaryStopped = false;
    await waitFor(() => canary.sent >= 30, 30_000, 'canary warm');
    canary.mark();
    baseline = resources();
    const from = canary.sent;
    await waitFor(() => canary.sent >= from + 50, 30_000, 'canary alone');
    alone = canary.mark();
  };

  /** The beside phase ends: acks timely, the canary's recording complete, resources back. */
  const expectCanaryUnharmed = async () => {
    const beside = canary.mark();
    expectAcksTimely(alone, beside);
    canaryStopped = true;
    const { closedFrames } = await canary.stop();
    expect(closedFrames).toBe(canary.sent);
    await expectRecordingComplete(app.db, canary.sessionId, canary.sent);
    await expectResourcesBack(baseline, 0.1);
  };

  it('refuses images beyond twice the declared size from their header, as rejected frames', async () => {
    await startWithCanary({});
    // Declared 640×480: at most 1280×960 per image, so every 6000×6000 PNG is refused unread.
    attackers = await Promise.all(
      Array.from({ length: ATTACKERS }, (_, i) => Attacker.start(app.url, i, 640, png)),
    );
    const from = canary.sent;
    await waitFor(() => canary.sent >= from + 50, 30_000, 'canary beside the attack');
    attackers.forEach((a) => a.stop());
    for (const [i, a] of attackers.entries()) {
      await a.client.acksUntil(a.sent);
      await waitFor(
        () => a.client.messages.filter((m) => m.type === 'error').length >= a.sent,
        30_000,
        `bad_image for each of attacker ${i}'s frames`,
      );
      const errors = a.client.messages.filter(
        (m): m is Extract<ServerMessage, { type: 'error' }> => m.type === 'error',
      );
      expect(errors.every((e) => e.code === 'bad_image' && /image limit/.test(e.message))).toBe(
        true,
      );
      expect(await a.closeSession(app.url, i)).toBe(a.sent);
      const row = await app.db.query<{ rejected_frames: string; video_frames: string }>(
        'SELECT rejected_frames, video_frames FROM sessions WHERE id = $1',
        [a.sessionId],
      );
      expect(Number(row.rows[0].rejected_frames)).toBe(a.sent);
      expect(Number(row.rows[0].video_frames)).toBe(0);
    }
    await expectCanaryUnharmed();
  }, 180_000);

  it('throttles sessions over their decode budget with flow image_budget, then 4029, and records every frame they stored', async () => {
    await startWithCanary({ STREAM_FLOW_GRACE_MS: '500', IMAGE_SESSION_BUDGET_MS_PER_S: '200' });
    // Declared 6000×6000: the images pass the size limit and cost their decode time.
    attackers = await Promise.all(
      Array.from({ length: ATTACKERS }, (_, i) => Attacker.start(app.url, i, 6000, png)),
    );
    for (const [i, a] of attackers.entries()) {
      await waitFor(
        () => a.client.messages.some((m) => m.type === 'flow' && m.reason === 'image_budget'),
        60_000,
        `flow image_budget to attacker ${i} (got ${JSON.stringify(a.client.messages.filter((m) => m.type !== 'ack'))})`,
      );
      expect((await a.client.closed).code).toBe(4029);
      a.stop();
    }
    for (const [i, a] of attackers.entries()) {
      const frames = await a.closeSession(app.url, i);
      expect(frames).toBeGreaterThan(0);
      expect(frames).toBeLessThanOrEqual(a.sent);
      await expectRecordingComplete(app.db, a.sessionId, frames);
    }
    await expectCanaryUnharmed();
  }, 300_000);
});
