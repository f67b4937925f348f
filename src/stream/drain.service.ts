import { Inject, Injectable, Logger } from '@nestjs/common';
import { withDeadline } from '../common/deadline';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { HandshakeService } from './handshake.service';
import { HTTP_SINK } from './fallback.controller';
import { SessionRegistry } from './session-registry.service';
import { StreamConnections } from './stream-connections.service';

/**
 * Graceful stop (SIGTERM): refuse new handshakes (503 rejected_draining), make every session's
 * frames durable and acked, close connections with 1012 so clients resume elsewhere, interrupt
 * HTTP-attached sessions, and write the last counters.
 */
@Injectable()
export class DrainService {
  private readonly logger = new Logger(DrainService.name);
  private drained: Promise<void> | undefined;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly handshake: HandshakeService,
    private readonly connections: StreamConnections,
    private readonly registry: SessionRegistry,
  ) {}

  drain(): Promise<void> {
    this.drained ??= this.run();
    return this.drained;
  }

  private async run(): Promise<void> {
    this.handshake.draining = true;
    const started = Date.now();
    const connections = this.connections.size;
    // Leave a share of the shutdown budget for audits and the database.
    await this.connections.drain(Math.floor(this.config.SHUTDOWN_TIMEOUT_MS / 2));
    for (const runtime of [...this.registry.runtimes()]) {
      if (runtime.attached === HTTP_SINK) {
        await this.registry.detach(runtime, HTTP_SINK, 'server_shutdown').catch(() => undefined);
      }
    }
    // Bounded: a database that does not answer must not hold up the rest of the shutdown.
    const unsaved = await withDeadline(
      this.registry.flushStats(),
      Math.floor(this.config.SHUTDOWN_TIMEOUT_MS / 4),
      'timeout' as const,
    );
    if (unsaved !== 0) {
      this.logger.warn(
        { sessions: unsaved === 'timeout' ? 'unknown' : unsaved },
        'session counters not saved at shutdown (database unavailable): deferred to the next start',
      );
    }
    this.logger.log({ connections, ms: Date.now() - started }, 'drained');
  }
}
