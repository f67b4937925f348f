import type { Logger } from '@nestjs/common';
import { Client, type ClientConfig } from 'pg';

/** Between attempts to connect again after the listening connection was lost. */
const RECONNECT_MS = 1_000;

/**
 * LISTENs on a few channels on a connection of its own (a pooled one would be handed to other
 * queries). A lost connection is made again every second; `onListening` runs after each
 * (re)connection, since notifications sent while it was down are lost and the owner must look
 * at the rows instead.
 */
export class NotifyListener {
  private client: Client | null = null;
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly options: ClientConfig,
    private readonly channels: Readonly<Record<string, (payload: string) => void>>,
    private readonly logger: Logger,
    private readonly onListening: () => void = () => undefined,
  ) {}

  start(): void {
    void this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.stopped) {
      return;
    }
    const client = new Client(this.options);
    let lost = false;
    const onLost = (err?: Error): void => {
      if (lost) {
        return;
      }
      lost = true;
      if (this.client === client) {
        this.client = null;
      }
      void client.end().catch(() => undefined);
      if (!this.stopped) {
        this.logger.warn({ err: err?.message }, 'notification listener lost; reconnecting');
        clearTimeout(this.retry);
        this.retry = setTimeout(() => void this.connect(), RECONNECT_MS);
        this.retry.unref();
      }
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    client.on('notification', (msg) => this.channels[msg.channel]?.(msg.payload ?? ''));
    try {
      await client.connect();
      for (const channel of Object.keys(this.channels)) {
        await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
      }
    } catch (err) {
      onLost(err as Error);
      return;
    }
    if (this.stopped || lost) {
      void client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.onListening();
  }
}
