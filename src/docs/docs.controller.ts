import { Controller, Get, Header } from '@nestjs/common';
import { Public } from '../auth/auth.decorators';
import { ApiDoc } from './api-doc';
import { buildAsyncApi } from './asyncapi';
import { PACKAGE_VERSION } from './version';

/** The AsyncAPI document of the WebSocket protocol (the OpenAPI one is served by Swagger). */
@Controller('docs')
@Public()
export class DocsController {
  private readonly asyncApi = JSON.stringify(buildAsyncApi(PACKAGE_VERSION));

  @Get('asyncapi.json')
  @Header('Content-Type', 'application/json; charset=utf-8')
  @ApiDoc({
    summary: 'AsyncAPI 3.0 document of the WebSocket stream protocol',
    responses: {
      200: {
        description: 'AsyncAPI 3.0 JSON',
        contentType: 'application/json',
        schema: { type: 'object' },
      },
    },
  })
  asyncapi(): string {
    return this.asyncApi;
  }
}
