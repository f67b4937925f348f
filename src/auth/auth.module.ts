import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { PassportModule } from '@nestjs/passport';
import { AccessGuard } from './access.guard';
import { JwtStrategy } from './jwt.strategy';
import { TicketsController } from './tickets.controller';
import { TicketsService } from './tickets.service';
import { TokenVerifier } from './token-verifier.service';

@Module({
  imports: [PassportModule],
  controllers: [TicketsController],
  providers: [
    TokenVerifier,
    JwtStrategy,
    TicketsService,
    { provide: APP_GUARD, useClass: AccessGuard },
  ],
  exports: [TokenVerifier, TicketsService],
})
export class AuthModule {}
