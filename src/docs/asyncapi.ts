import { z } from 'zod';
import { CLOSE_CODE_MEANINGS, CloseCode } from '../protocol/close-codes';
import { MAX_CONTROL_BYTES, clientMessageSchema, serverMessageSchema } from '../protocol/messages';
import { MEDIA_HEADER_BYTES, MEDIA_HEADER_LAYOUT } from '../protocol/media-header';
import { SUBPROTOCOL } from '../protocol/subprotocol';

type JsonSchema = Record<string, unknown>;

/** A zod schema as the JSON Schema (draft-07) that AsyncAPI payloads use. */
function payload(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, { target: 'draft-7', io: 'input', unrepresentable: 'any' });
}

/** The `type` literal of each member of a discriminated union of messages. */
function members(union: z.ZodDiscriminatedUnion): Array<{ type: string; schema: z.ZodType }> {
  return union.options.map((option) => {
    const type = (option as z.ZodObject).shape.type as z.ZodLiteral<string>;
    return { type: type.value, schema: option as z.ZodType };
  });
}

const messageName = (direction: 'client' | 'server', type: string): string =>
  `${direction}.${type}`;

/**
 * The AsyncAPI 3.0 description of the WebSocket protocol, built from the zod schemas in
 * src/protocol that the server validates with and the SDK takes its types from: every client and
 * server text message, the binary media message with its header, and the close codes.
 */
export function buildAsyncApi(version: string): Record<string, unknown> {
  const messages: Record<string, unknown> = {};
  /** Adds each text message of one direction; returns their names. */
  const textMessages = (
    direction: 'client' | 'server',
    union: z.ZodDiscriminatedUnion,
    arrow: string,
  ): string[] =>
    members(union).map(({ type, schema }) => {
      const name = messageName(direction, type);
      messages[name] = {
        name,
        title: `${type} (${arrow})`,
        contentType: 'application/json',
        payload: payload(schema),
      };
      return name;
    });
  const send = textMessages('client', clientMessageSchema, 'client → server');
  const receive = textMessages('server', serverMessageSchema, 'server → client');
  messages['client.media'] = {
    name: 'client.media',
    title: 'media (client → server, binary)',
    summary: `A ${MEDIA_HEADER_BYTES}-byte big-endian header, then a JPEG (track 1) or PCM s16le (track 2)`,
    contentType: 'application/octet-stream',
    payload: { type: 'string', format: 'binary' },
    'x-media-header': MEDIA_HEADER_LAYOUT.map((f) => ({ ...f })),
  };
  send.push('client.media');

  const ref = (name: string) => ({ $ref: `#/channels/stream/messages/${name}` });
  const channelMessages = Object.fromEntries(
    Object.keys(messages).map((name) => [name, { $ref: `#/components/messages/${name}` }]),
  );
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'framegate stream protocol',
      version,
      description:
        `WebSocket subprotocol \`${SUBPROTOCOL}\`. Text messages are JSON of at most ` +
        `${MAX_CONTROL_BYTES} bytes; media messages are binary. See docs/protocol.md.`,
    },
    defaultContentType: 'application/json',
    channels: {
      stream: {
        address: '/v1/stream',
        title: 'One session over one WebSocket',
        messages: channelMessages,
        bindings: {
          ws: {
            method: 'GET',
            query: {
              type: 'object',
              properties: {
                ticket: {
                  type: 'string',
                  description: 'A single-use ticket from POST /v1/tickets, instead of the header',
                },
              },
            },
            headers: {
              type: 'object',
              properties: {
                Authorization: { type: 'string', description: 'Bearer access token' },
                'Sec-WebSocket-Protocol': { type: 'string', const: SUBPROTOCOL },
              },
            },
          },
        },
        'x-close-codes': Object.entries(CLOSE_CODE_MEANINGS).map(([code, meaning]) => ({
          code: Number(code),
          name: CloseCode[Number(code)],
          meaning,
        })),
      },
    },
    // Operations from the point of view of the application described: the framegate server.
    operations: {
      receiveFromClient: {
        action: 'receive',
        title: 'What the client sends',
        channel: { $ref: '#/channels/stream' },
        messages: send.map(ref),
      },
      sendToClient: {
        action: 'send',
        title: 'What the server sends',
        channel: { $ref: '#/channels/stream' },
        messages: receive.map(ref),
      },
    },
    components: { messages },
  };
}
