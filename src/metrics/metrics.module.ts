import { Module } from '@nestjs/common';
import { MediaModule } from '../media/media.module';
import { StreamModule } from '../stream/stream.module';
import { MetricsController } from './metrics.controller';

@Module({
  imports: [StreamModule, MediaModule],
  controllers: [MetricsController],
})
export class MetricsModule {}
