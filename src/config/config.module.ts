import { type DynamicModule, Global, Module } from '@nestjs/common';
import { APP_CONFIG } from './config';
import { RUNTIME, type Runtime } from './runtime';

/** Makes the validated config and boot-time runtime values injectable everywhere. */
@Global()
@Module({})
export class ConfigModule {
  static forRoot(runtime: Runtime): DynamicModule {
    return {
      module: ConfigModule,
      providers: [
        { provide: APP_CONFIG, useValue: runtime.config },
        { provide: RUNTIME, useValue: runtime },
      ],
      exports: [APP_CONFIG, RUNTIME],
    };
  }
}
