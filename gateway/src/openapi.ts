import { DescEnum, DescField, DescMessage, ScalarType } from '@bufbuild/protobuf';
import type { Access } from '@iot-mesh/runtime';
import { leadingComment } from './proto-comments';
import { HttpBinding, RouteMethod, RouteTable } from './route-table';
import { describeFirmwareImageRoutes } from './firmware-image';

/** A JSON Schema / OpenAPI object, as plain JSON. */
type Json = Record<string, unknown>;

/** An OpenAPI 3.1 document. */
export interface OpenApiDocument {
  openapi: string;
  info: Json;
  paths: Record<string, Record<string, Json>>;
  components: { schemas: Record<string, Json>; securitySchemes: Record<string, Json> };
  [key: string]: unknown;
}

/** Security schemes: an access token from Login, or an API key (`Authorization: ApiKey <secret>`). */
const SECURITY_SCHEMES: Record<string, Json> = {
  bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Access token from `POST /v1/auth:login` (`Authorization: Bearer <token>`).' },
  apiKey: { type: 'apiKey', in: 'header', name: 'Authorization', description: 'An API key secret, sent as `Authorization: ApiKey <secret>`.' },
  deviceCredential: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'NATS user JWT',
    description: "A device's own credential, the NATS user JWT the device service issued it (`Authorization: Bearer <credential>`); no user token or API key is accepted.",
  },
};

/** The security requirement of each access rule: none on public routes, the device's own credential where a device calls. */
function securityOf(access: Access): Json[] {
  if (access === 'public') return [];
  if (access === 'device_credential') return [{ deviceCredential: [] }];
  return [{ bearer: [] }, { apiKey: [] }];
}

/** Who each access rule lets in, as the reference says it. */
const ACCESS_TEXT: Record<Access, string> = {
  public: 'Public: no credentials needed.',
  authenticated: 'Any signed-in caller.',
  viewer: 'Role viewer or above.',
  operator: 'Role operator or above.',
  admin: 'Role admin.',
  platform_admin: 'Admins of the platform tenant only.',
  device_credential: "A device with its own device credential (no user token or API key).",
};

/** proto3 JSON mapping of the well-known types (https://protobuf.dev/programming-guides/json/). */
const WELL_KNOWN: Record<string, Json> = {
  'google.protobuf.Timestamp': { type: 'string', format: 'date-time' },
  'google.protobuf.Duration': { type: 'string', pattern: '^-?\\d+(\\.\\d+)?s$', examples: ['1.5s'] },
  'google.protobuf.FieldMask': { type: 'string', description: 'Comma-separated field paths (camelCase).' },
  'google.protobuf.Struct': { type: 'object', additionalProperties: true },
  'google.protobuf.Value': {},
  'google.protobuf.ListValue': { type: 'array', items: {} },
  'google.protobuf.Empty': { type: 'object' },
  'google.protobuf.Any': { type: 'object', properties: { '@type': { type: 'string' } }, required: ['@type'], additionalProperties: true },
  'google.protobuf.StringValue': { type: ['string', 'null'] },
  'google.protobuf.BytesValue': { type: ['string', 'null'], contentEncoding: 'base64' },
  'google.protobuf.BoolValue': { type: ['boolean', 'null'] },
  'google.protobuf.Int32Value': { type: ['integer', 'null'], format: 'int32' },
  'google.protobuf.UInt32Value': { type: ['integer', 'null'], format: 'int32' },
  'google.protobuf.Int64Value': { type: ['string', 'null'], format: 'int64' },
  'google.protobuf.UInt64Value': { type: ['string', 'null'], format: 'int64' },
  'google.protobuf.FloatValue': { type: ['number', 'null'], format: 'float' },
  'google.protobuf.DoubleValue': { type: ['number', 'null'], format: 'double' },
};

function scalarSchema(scalar: ScalarType): Json {
  switch (scalar) {
    case ScalarType.BOOL:
      return { type: 'boolean' };
    case ScalarType.STRING:
      return { type: 'string' };
    case ScalarType.BYTES:
      return { type: 'string', contentEncoding: 'base64' };
    case ScalarType.DOUBLE:
      return { type: 'number', format: 'double' };
    case ScalarType.FLOAT:
      return { type: 'number', format: 'float' };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      // proto3 JSON writes 64-bit integers as strings so no client loses precision.
      return { type: 'string', format: 'int64', pattern: '^-?\\d+$' };
    default:
      return { type: 'integer', format: 'int32' };
  }
}

/** Summary and description from a proto comment. */
function describe(comment: string): { summary?: string; description?: string } {
  const text = commentText(comment);
  if (!text) return {};
  const oneLine = text.split(/\n\s*\n/)[0].replace(/\s+/g, ' ');
  const end = /\.(?=\s|$)/.exec(oneLine);
  return { summary: end ? oneLine.slice(0, end.index + 1) : oneLine, description: text };
}

/** Builds component schemas for messages and enums on demand, by full name. */
class SchemaBuilder {
  readonly schemas: Record<string, Json> = {};

  ref(desc: DescMessage | DescEnum): Json {
    if (desc.kind === 'message' && WELL_KNOWN[desc.typeName]) return WELL_KNOWN[desc.typeName];
    if (!this.schemas[desc.typeName]) {
      this.schemas[desc.typeName] = {}; // placeholder: recursive messages refer to themselves
      this.schemas[desc.typeName] = desc.kind === 'enum' ? this.enumSchema(desc) : this.messageSchema(desc);
    }
    return { $ref: `#/components/schemas/${desc.typeName}` };
  }

  private enumSchema(desc: DescEnum): Json {
    // proto3 JSON writes enum names; parsers accept the numbers too.
    return { type: 'string', enum: desc.values.map((v) => v.name), ...withDescription(leadingComment(desc)) };
  }

  private messageSchema(desc: DescMessage): Json {
    const properties: Record<string, Json> = {};
    for (const field of desc.fields) properties[field.jsonName] = { ...this.fieldSchema(field), ...withDescription(leadingComment(field)) };
    return { type: 'object', properties, ...withDescription(leadingComment(desc)) };
  }

  fieldSchema(field: DescField): Json {
    switch (field.fieldKind) {
      case 'scalar':
        return scalarSchema(field.scalar);
      case 'enum':
        return this.ref(field.enum);
      case 'message':
        return this.ref(field.message);
      case 'list': {
        const items = field.listKind === 'scalar' ? scalarSchema(field.scalar) : field.listKind === 'enum' ? this.ref(field.enum) : this.ref(field.message);
        return { type: 'array', items };
      }
      case 'map': {
        const values = field.mapKind === 'scalar' ? scalarSchema(field.scalar) : field.mapKind === 'enum' ? this.ref(field.enum) : this.ref(field.message);
        return { type: 'object', additionalProperties: values };
      }
    }
  }
}

/** A proto comment without the space after `//` that every line keeps. */
function commentText(comment: string): string {
  return comment.replace(/^ /gm, '').trim();
}

function withDescription(comment: string): Json {
  const text = commentText(comment);
  return text ? { description: text } : {};
}

/** `/v1/devices/{device.id}` from the template, without `=segments` patterns OpenAPI cannot express. */
export function openApiPath(binding: HttpBinding): string {
  return binding.template.source.replace(/\{([A-Za-z0-9_.]+)=[^}]*\}/g, '{$1}');
}

/** Query parameters for the request fields neither the path nor the body binds, with dotted names for nested fields. */
function queryParameters(message: DescMessage, bound: Set<string>, schemas: SchemaBuilder, prefix = '', depth = 0): Json[] {
  const out: Json[] = [];
  for (const field of message.fields) {
    const name = `${prefix}${field.name}`;
    if (bound.has(name)) continue;
    const description = commentText(leadingComment(field)) || undefined;
    if (field.fieldKind === 'message' && !WELL_KNOWN[field.message.typeName]) {
      if (depth < 2) out.push(...queryParameters(field.message, bound, schemas, `${name}.`, depth + 1));
      continue;
    }
    if (field.fieldKind === 'map') {
      // The gateway accepts `labels[key]=value` (and `labels.key=value`) for string maps.
      if (field.mapKey === ScalarType.STRING && field.mapKind === 'scalar') {
        out.push({ name, in: 'query', style: 'deepObject', explode: true, schema: schemas.fieldSchema(field), description: `${description ? `${description} ` : ''}Sent as \`${name}[key]=value\`.` });
      }
      continue;
    }
    if (field.fieldKind === 'list' && field.listKind === 'message') continue;
    const schema = schemas.fieldSchema(field);
    out.push({ name, in: 'query', schema, ...(field.fieldKind === 'list' ? { style: 'form', explode: true } : {}), ...(description ? { description } : {}) });
  }
  return out;
}

function fieldAt(message: DescMessage, path: string[]): DescField | undefined {
  let current: DescMessage | undefined = message;
  let field: DescField | undefined;
  for (const part of path) {
    field = current?.fields.find((f) => f.name === part || f.jsonName === part);
    current = field?.fieldKind === 'message' ? field.message : undefined;
  }
  return field;
}

const STATUS_REF = { $ref: '#/components/schemas/google.rpc.Status' };

function operation(route: RouteMethod, binding: HttpBinding, schemas: SchemaBuilder, operationId: string): Json {
  const input = route.method.input;
  const bound = new Set(binding.template.variables.map((v) => v.fieldPath.join('.')));
  const parameters: Json[] = binding.template.variables.map((v) => {
    const field = fieldAt(input, v.fieldPath);
    return { name: v.fieldPath.join('.'), in: 'path', required: true, schema: field ? schemas.fieldSchema(field) : { type: 'string' } };
  });
  let requestBody: Json | undefined;
  if (binding.body === '*') {
    requestBody = { required: true, content: { 'application/json': { schema: schemas.ref(input) } } };
  } else if (binding.body !== '') {
    const field = fieldAt(input, [binding.body])!;
    bound.add(field.name);
    requestBody = { required: true, content: { 'application/json': { schema: schemas.fieldSchema(field) } } };
  }
  if (binding.body !== '*') parameters.push(...queryParameters(input, bound, schemas));
  const responseField = binding.responseBody ? fieldAt(route.method.output, [binding.responseBody]) : undefined;
  const responseSchema = responseField ? schemas.fieldSchema(responseField) : schemas.ref(route.method.output);
  const text = describe(leadingComment(route.method));
  const isPublic = route.access === 'public';
  const errors: Record<string, Json> = {
    default: { description: 'An error as `google.rpc.Status` (HTTP status from the gRPC code).', content: { 'application/json': { schema: STATUS_REF } } },
  };
  if (!isPublic) {
    errors['401'] = { description: 'No valid credentials (UNAUTHENTICATED).', content: { 'application/json': { schema: STATUS_REF } } };
    errors['403'] = { description: 'The caller\'s role does not allow this (PERMISSION_DENIED).', content: { 'application/json': { schema: STATUS_REF } } };
  }
  return {
    operationId,
    tags: [route.service.name],
    summary: text.summary ?? route.method.name,
    description: [text.description, `**Access:** ${ACCESS_TEXT[route.access]}`, `gRPC: \`${route.grpcPath}\``].filter(Boolean).join('\n\n'),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(requestBody ? { requestBody } : {}),
    responses: { '200': { description: 'OK', content: { 'application/json': { schema: responseSchema } } }, ...errors },
    security: securityOf(route.access),
    'x-iot-access': route.access,
  };
}

/**
 * The OpenAPI 3.1 document of every REST route (`google.api.http` binding) of
 * the route table: parameters from path templates and unbound request fields,
 * bodies and responses from the messages in proto3 JSON form, security from
 * each RPC's access option, errors as `google.rpc.Status`.
 */
export function buildOpenApi(table: RouteTable, options: { version?: string; serverUrl?: string } = {}): OpenApiDocument {
  const schemas = new SchemaBuilder();
  const status = table.registry.getMessage('google.rpc.Status');
  if (status) schemas.ref(status);
  else schemas.schemas['google.rpc.Status'] = { type: 'object', properties: { code: { type: 'integer' }, message: { type: 'string' }, details: { type: 'array', items: WELL_KNOWN['google.protobuf.Any'] } } };
  const paths: OpenApiDocument['paths'] = {};
  const tags = table.services.filter((s) => table.methods.some((m) => m.service === s && m.http.length > 0)).map((s) => ({ name: s.name, ...withDescription(leadingComment(s)) }));
  for (const route of table.methods) {
    route.http.forEach((binding, i) => {
      const path = openApiPath(binding);
      const operationId = i === 0 ? `${route.service.name}_${route.method.name}` : `${route.service.name}_${route.method.name}_${i + 1}`;
      (paths[path] ??= {})[binding.verb.toLowerCase()] = operation(route, binding, schemas, operationId);
    });
  }
  describeFirmwareImageRoutes(paths as Record<string, Record<string, Record<string, unknown>>>);
  const sortedPaths = Object.fromEntries(Object.entries(paths).sort(([a], [b]) => (a < b ? -1 : 1)));
  return {
    openapi: '3.1.0',
    info: {
      title: 'iot-mesh REST API',
      version: options.version ?? '1',
      description:
        'Generated from the protobuf descriptor set and its `google.api.http` annotations (the same routes Envoy and the Node gateway serve). ' +
        'Bodies and responses are proto3 JSON: camelCase fields, 64-bit integers as strings, enums by name, timestamps as RFC 3339. ' +
        'Errors are `google.rpc.Status` with the HTTP status Envoy maps from the gRPC code.',
    },
    servers: [{ url: options.serverUrl ?? '/' }],
    tags,
    paths: sortedPaths,
    components: { schemas: schemas.schemas, securitySchemes: SECURITY_SCHEMES },
  };
}
