import { Global, Module } from '@nestjs/common';
import { AuditWriter } from './audit-writer.service';

/** The audit writer, global because handshakes, sessions and the gateway all record. */
@Global()
@Module({
  providers: [AuditWriter],
  exports: [AuditWriter],
})
export class AuditModule {}
