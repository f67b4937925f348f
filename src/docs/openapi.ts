import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, type OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import { PACKAGE_VERSION } from './version';

/**
 * Builds the OpenAPI 3 document from the controllers (their `ApiDoc` and `RequireScopes`
 * decorators, whose schemas are the zod schemas the routes validate with) and serves the UI at
 * `/docs` and the JSON at `/docs-json`.
 */
export function serveOpenApi(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('framegate')
    .setDescription(
      'REST API of framegate. The WebSocket protocol is described by /docs/asyncapi.json. ' +
        'Every refusal answers the error body (`error`, `message`, `fields` on validation).',
    )
    .setVersion(PACKAGE_VERSION)
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' })
    .build();
  const document = SwaggerModule.createDocument(app, config);
  SwaggerModule.setup('docs', app, document, {
    jsonDocumentUrl: 'docs-json',
    yamlDocumentUrl: 'docs-yaml',
    customSiteTitle: 'framegate API',
  });
  return document;
}
