import { Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { EventEmitter } from 'node:events';
import type { DataSource } from 'typeorm';

const GUARDED = Symbol('framegate.pgErrorGuard');

/**
 * Keeps a dying database from crashing the process. pg emits `error` on a client whose server
 * goes away; the pool listens while the client is idle and TypeORM while a query runner holds it,
 * but TypeORM attaches its listener a microtask after the pool hands the client over. A FATAL
 * (57P01 on a kill -9 of the postmaster) parsed in that gap has no listener, and an `error` event
 * without one throws (seen once in test/database-reconnect). Every client gets one permanent
 * listener when first checked out; the pool and TypeORM still see the error through their own.
 */
@Injectable()
export class PoolErrorGuard implements OnModuleInit {
  private readonly logger = new Logger('Database');

  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  onModuleInit(): void {
    const pool = (this.dataSource.driver as unknown as { master?: EventEmitter }).master;
    pool?.on('acquire', (client: EventEmitter & { [GUARDED]?: true }) => {
      if (client[GUARDED]) {
        return;
      }
      client[GUARDED] = true;
      client.on('error', (err: Error) =>
        this.logger.warn({ err: err.message }, 'database connection lost'),
      );
    });
  }
}
