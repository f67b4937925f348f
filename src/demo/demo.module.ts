import { Module } from '@nestjs/common';
import { DemoController } from './demo.controller';

/** The demo page's server side: its development tokens (its files: demo-files.ts). */
@Module({ controllers: [DemoController] })
export class DemoModule {}
