import SwaggerParser from '@apidevtools/swagger-parser';
import { DiagnosticSeverity, Parser } from '@asyncapi/parser';
import type { OpenAPIV3 } from 'openapi-types';
import { CloseCode } from '../src/protocol/close-codes';
import { clientMessageSchema, serverMessageSchema } from '../src/protocol/messages';
import { startTestApp, type TestApp } from './support/app';

/** Express's route table: every path and method a controller serves (Swagger's own excluded). */
function routeTable(app: TestApp): Set<string> {
  const express = app.started.app.getHttpAdapter().getInstance() as {
    router: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> };
  };
  const routes = new Set<string>();
  for (const layer of express.router.stack) {
    const route = layer.route;
    // Skipped: Swagger's own pages, and `/{*path}`, where Nest mounts middleware registered for
    // every route (the request logger), which is no endpoint.
    if (
      !route ||
      route.path === '/{*path}' ||
      (/^\/docs(-json|-yaml)?(\/|$)/.test(route.path) && route.path !== '/docs/asyncapi.json')
    ) {
      continue;
    }
    const path = route.path.replace(/:(\w+)/g, '{$1}');
    for (const [method, on] of Object.entries(route.methods)) {
      if (on && method !== '_all') {
        routes.add(`${method.toUpperCase()} ${path}`);
      }
    }
  }
  return routes;
}

describe('API documents', () => {
  let app: TestApp;

  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(() => app.close());

  it('serves an OpenAPI 3 document that validates and lists every route, with scopes and error bodies', async () => {
    const res = await fetch(`${app.url}/docs-json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as OpenAPIV3.Document;
    expect(doc.openapi).toMatch(/^3\./);
    // The validator dereferences in place: give it a copy.
    await SwaggerParser.validate(structuredClone(doc) as never);

    const documented = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of ['get', 'head', 'post', 'put', 'delete', 'patch'] as const) {
        const op = item?.[method];
        if (!op) {
          continue;
        }
        documented.add(`${method.toUpperCase()} ${path}`);
        const where = `${method.toUpperCase()} ${path}`;
        expect([where, Boolean(op.summary)]).toEqual([where, true]);
        const statuses = Object.keys(op.responses);
        expect([where, statuses.some((s) => /^2\d\d$/.test(s))]).toEqual([where, true]);
        const scopes = (op as { 'x-required-scopes'?: string[] })['x-required-scopes'];
        // The public routes: probes, these documents, and the demo's development tokens.
        const isPublic =
          path.startsWith('/health') ||
          path.startsWith('/docs') ||
          path === '/metrics' ||
          path === '/demo/token';
        if (!isPublic) {
          // Behind a scope: bearer security, the scopes named, and the 401/403 error bodies.
          expect([where, scopes?.length ?? 0]).not.toEqual([where, 0]);
          expect([where, op.security]).toEqual([where, [{ bearer: [] }]]);
          for (const status of ['401', '403']) {
            const answer = op.responses[status] as OpenAPIV3.ResponseObject;
            const schema = answer.content?.['application/json']?.schema as OpenAPIV3.SchemaObject;
            expect([where, schema?.required]).toEqual([where, ['error', 'message']]);
          }
        }
      }
    }
    expect([...documented].sort()).toEqual([...routeTable(app)].sort());

    // Request schemas are the zod schemas the route validates with: `open`'s limits are there.
    const open = doc.paths['/v1/sessions']?.post?.requestBody as OpenAPIV3.RequestBodyObject;
    const body = open.content['application/json']?.schema as OpenAPIV3.SchemaObject;
    expect(body.required).toEqual(['video']);
    const video = body.properties?.video as OpenAPIV3.SchemaObject;
    expect(video.properties?.width).toMatchObject({ type: 'integer', minimum: 16, maximum: 8192 });

    const ui = await fetch(`${app.url}/docs`);
    expect(ui.status).toBe(200);
    expect(await ui.text()).toMatch(/swagger-ui/i);
  });

  it('serves an AsyncAPI 3 document of the stream protocol that the AsyncAPI parser accepts', async () => {
    const res = await fetch(`${app.url}/docs/asyncapi.json`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const { document, diagnostics } = await new Parser().parse(text);
    // Errors only: warnings and hints are advice.
    expect(diagnostics.filter((d) => Number(d.severity) === Number(DiagnosticSeverity.Error))).toEqual([]);
    expect(document?.version()).toBe('3.0.0');

    const names = new Set(
      document
        ?.allMessages()
        .all()
        .map((m) => m.name()),
    );
    for (const option of clientMessageSchema.options) {
      expect(names).toContain(`client.${option.shape.type.value}`);
    }
    for (const option of serverMessageSchema.options) {
      expect(names).toContain(`server.${option.shape.type.value}`);
    }
    expect(names).toContain('client.media');

    const raw = JSON.parse(text) as {
      channels: { stream: { 'x-close-codes': Array<{ code: number }> } };
      components: { messages: Record<string, { 'x-media-header'?: Array<{ name: string }> }> };
    };
    const codes = raw.channels.stream['x-close-codes'].map((c) => c.code).sort();
    const expected = Object.values(CloseCode)
      .filter((v): v is number => typeof v === 'number')
      .sort();
    expect(codes).toEqual(expected);
    expect(raw.components.messages['client.media']?.['x-media-header']?.map((f) => f.name)).toEqual(
      ['version', 'track', 'flags', 'seq', 'pts'],
    );
  });
});
