import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { JwtPayload } from 'jsonwebtoken';
import jwt from 'jsonwebtoken';
import { ExtractJwt, Strategy } from 'passport-jwt';
import type { Principal } from './scopes';
import { TokenVerifier } from './token-verifier.service';

/** passport-jwt over the same key rules and verify options as the WebSocket handshake. */
@Injectable()
export class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
  constructor(private readonly verifier: TokenVerifier) {
    super({
      jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
      secretOrKeyProvider: (
        _req: unknown,
        rawJwt: string,
        done: (e: unknown, key?: string) => void,
      ) => {
        const decoded = jwt.decode(rawJwt, { complete: true });
        if (!decoded) {
          done(new Error('token malformed'));
          return;
        }
        verifier.keyFor(decoded.header).then(
          (key) => done(null, key),
          (err: unknown) => done(err),
        );
      },
      algorithms: verifier.algorithms,
      issuer: verifier.verifyOptions.issuer as string | undefined,
      audience: verifier.verifyOptions.audience as string | undefined,
      jsonWebTokenOptions: { clockTolerance: verifier.verifyOptions.clockTolerance },
    });
  }

  validate(payload: JwtPayload): Principal {
    return this.verifier.principalFromClaims(payload);
  }
}
