import type { IncomingMessage, ServerResponse } from 'node:http';
import { create, DescField, DescMessage, DescMethodUnary, fromBinary, fromJson, JsonObject, JsonValue, Registry, ScalarType, toJson } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { MAX_REQUEST_BYTES, UNARY_TIMEOUT_MS } from './edge-policy';
import { HttpBinding, HttpVerb, RouteMethod, RouteTable } from './route-table';
import { matchPathTemplate, PathBindings } from './path-template';
import { forwardedHeaders, Upstreams } from './upstreams';



/** HTTP status for each gRPC code, as Envoy's transcoder maps them (Grpc::Utility::grpcToHttpStatus). */
export const HTTP_STATUS_BY_CODE: Record<number, number> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 400,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

/** A REST request matched to an RPC. */
export interface RestMatch {
  route: RouteMethod;
  binding: HttpBinding;
  pathBindings: PathBindings;
}

/** What a REST call answers: an HTTP status and a JSON body. */
export interface RestResult {
  status: number;
  body: JsonValue;
  headers?: Headers;
}

/** Matches REST requests against every `google.api.http` binding of the table. */
export class RestRouter {
  private readonly entries: Array<{ route: RouteMethod; binding: HttpBinding }>;

  constructor(table: RouteTable) {
    this.entries = table.methods
      .flatMap((route) => route.http.map((binding) => ({ route, binding })))
      // More literal segments first, so `/v1/users/me:changePassword` wins over `/v1/users/{id}`.
      .sort((a, b) => b.binding.template.literalCount - a.binding.template.literalCount || a.binding.template.variables.length - b.binding.template.variables.length);
  }

  /** The binding for a verb and path; `undefined` when no template matches the path at all. */
  match(verb: string, urlPath: string): RestMatch | 'method-not-allowed' | undefined {
    let pathMatched = false;
    for (const { route, binding } of this.entries) {
      const pathBindings = matchPathTemplate(binding.template, urlPath);
      if (!pathBindings) continue;
      pathMatched = true;
      if (binding.verb === (verb as HttpVerb)) return { route, binding, pathBindings };
    }
    return pathMatched ? 'method-not-allowed' : undefined;
  }
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** Finds a field by proto name or JSON name, as the transcoder accepts both. */
function findField(message: DescMessage, name: string): DescField | undefined {
  return message.fields.find((f) => f.name === name || f.jsonName === name);
}

const STRING_WELL_KNOWN = new Set([
  'google.protobuf.Timestamp',
  'google.protobuf.Duration',
  'google.protobuf.FieldMask',
  'google.protobuf.StringValue',
  'google.protobuf.BytesValue',
  'google.protobuf.Int32Value',
  'google.protobuf.Int64Value',
  'google.protobuf.UInt32Value',
  'google.protobuf.UInt64Value',
  'google.protobuf.FloatValue',
  'google.protobuf.DoubleValue',
]);

/** Turns a path or query string into the JSON value proto3 JSON parsing expects for the field. */
function jsonValueFor(field: DescField, raw: string, where: string): JsonValue {
  const kind = field.fieldKind === 'list' ? field.listKind : field.fieldKind;
  if (kind === 'scalar') {
    const scalar = field.fieldKind === 'list' ? field.scalar : field.fieldKind === 'scalar' ? field.scalar : undefined;
    if (scalar === ScalarType.BOOL) {
      if (raw === 'true' || raw === 'false') return raw === 'true';
      throw invalid(`${where}: ${JSON.stringify(raw)} is not true or false`);
    }
    // proto3 JSON accepts numbers as strings, so 64-bit values keep their precision.
    return raw;
  }
  if (kind === 'enum') return /^-?\d+$/.test(raw) ? Number(raw) : raw;
  if (kind === 'message') {
    const message = field.fieldKind === 'list' ? field.message : field.fieldKind === 'message' ? field.message : undefined;
    if (message?.typeName === 'google.protobuf.BoolValue') return raw === 'true' ? true : raw === 'false' ? false : raw;
    if (message && STRING_WELL_KNOWN.has(message.typeName)) return raw;
  }
  throw invalid(`${where}: this field cannot be set from the URL`);
}

/** Sets a dotted field path in a proto3 JSON object, using JSON names. */
function setJsonPath(root: JsonObject, message: DescMessage, path: string[], raw: string, where: string, append: boolean): void {
  let object = root;
  let current = message;
  for (const [i, part] of path.entries()) {
    const field = findField(current, part);
    if (!field) throw invalid(`${where}: no field ${JSON.stringify(path.slice(0, i + 1).join('.'))} in ${current.typeName}`);
    if (field.name !== field.jsonName) delete object[field.name];
    if (field.fieldKind === 'map' && i === path.length - 2) {
      // `labels.site=a` or `labels[site]=a`: one entry of a map with string keys and scalar values.
      if (field.mapKey !== ScalarType.STRING || field.mapKind !== 'scalar') throw invalid(`${where}: only maps from strings to scalars can be set from the URL`);
      const entries = object[field.jsonName];
      const map = entries !== null && typeof entries === 'object' && !Array.isArray(entries) ? entries : {};
      map[path[i + 1]] = field.scalar === ScalarType.BOOL ? raw === 'true' : raw;
      object[field.jsonName] = map;
      return;
    }
    if (i === path.length - 1) {
      if (field.fieldKind === 'map') throw invalid(`${where}: set map entries as ${field.name}[key]=value or ${field.name}.key=value`);
      const value = jsonValueFor(field, raw, where);
      if (field.fieldKind === 'list') {
        const existing = object[field.jsonName];
        object[field.jsonName] = append && Array.isArray(existing) ? [...existing, value] : [value];
      } else object[field.jsonName] = value;
      return;
    }
    if (field.fieldKind !== 'message') throw invalid(`${where}: ${field.name} has no fields`);
    const next = object[field.jsonName];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) object[field.jsonName] = {};
    object = object[field.jsonName] as JsonObject;
    current = field.message;
  }
}

/** `page.page_size` → [page, page_size]; `labels[site]` → [labels, site] (a map key may hold dots then). */
function queryFieldPath(name: string): string[] {
  const bracket = /^([^[\]]+)\[([^[\]]*)\]$/.exec(name);
  return bracket ? [...bracket[1].split('.'), bracket[2]] : name.split('.');
}

/**
 * A body over MAX_REQUEST_BYTES: answered 413, as Envoy's transcoder does.
 * (Not a ConnectError subclass: ConnectError's instanceof matches any ConnectError.)
 */
class BodyTooLarge extends Error {}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_REQUEST_BYTES) throw new BodyTooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Builds the request message from path variables, query parameters and the
 * body as the HTTP rule binds them, then parses it with proto3 JSON rules.
 */
export async function restRequestJson(match: RestMatch, query: URLSearchParams, req: IncomingMessage): Promise<JsonObject> {
  const input = match.route.method.input;
  const { body } = match.binding;
  let json: JsonObject = {};
  if (body !== '') {
    const text = await readBody(req);
    let parsed: JsonValue = {};
    if (text.trim() !== '') {
      try {
        parsed = JSON.parse(text) as JsonValue;
      } catch (err) {
        throw invalid(`request body is not JSON: ${(err as Error).message}`);
      }
    }
    if (body === '*') {
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw invalid('request body must be a JSON object');
      json = parsed;
    } else {
      const field = findField(input, body);
      if (!field) throw new ConnectError(`HTTP rule body names unknown field ${body}`, Code.Internal);
      json[field.jsonName] = parsed;
    }
  }
  for (const { variable, value } of match.pathBindings) setJsonPath(json, input, variable.fieldPath, value, `path variable ${variable.fieldPath.join('.')}`, false);
  const bodyField = body !== '' && body !== '*' ? findField(input, body) : undefined;
  for (const [name, value] of query) {
    if (body === '*') throw invalid(`query parameter ${JSON.stringify(name)}: this method takes all fields in the body`);
    const path = queryFieldPath(name);
    if (bodyField && findField(input, path[0]) === bodyField) throw invalid(`query parameter ${JSON.stringify(name)}: set in the body instead`);
    setJsonPath(json, input, path, value, `query parameter ${JSON.stringify(name)}`, true);
  }
  return json;
}

/** `google.rpc.Status` as JSON, with details expanded through the registry like Envoy's `convert_grpc_status`. */
export function statusJson(error: ConnectError, registry: Registry): JsonObject {
  const details = error.details.map((detail): JsonValue => {
    if ('desc' in detail) {
      const value = toJson(detail.desc, create(detail.desc, detail.value), { registry }) as JsonObject;
      return { '@type': `type.googleapis.com/${detail.desc.typeName}`, ...value };
    }
    const desc = registry.getMessage(detail.type);
    if (!desc) return { '@type': `type.googleapis.com/${detail.type}`, value: Buffer.from(detail.value).toString('base64') };
    const value = toJson(desc, fromBinary(desc, detail.value), { registry }) as JsonObject;
    return { '@type': `type.googleapis.com/${detail.type}`, ...value };
  });
  return { code: error.code, message: error.rawMessage, ...(details.length > 0 ? { details } : {}) };
}

/** Calls the RPC a REST request matched and renders the proto3 JSON answer (or a `google.rpc.Status`). */
export async function handleRest(match: RestMatch, url: URL, req: IncomingMessage, upstreams: Upstreams, table: RouteTable, signal: AbortSignal): Promise<RestResult> {
  try {
    const json = await restRequestJson(match, url.searchParams, req);
    const method = match.route.method as DescMethodUnary;
    let request;
    try {
      request = fromJson(method.input, json, { registry: table.registry });
    } catch (err) {
      throw invalid((err as Error).message);
    }
    const headers = forwardedHeaders(new Headers(req.headers as Record<string, string>), req.socket.remoteAddress);
    const response = await upstreams.transportFor(match.route).unary(method, signal, UNARY_TIMEOUT_MS, headers, request);
    const output = toJson(method.output, response.message, { registry: table.registry }) as JsonObject;
    const { responseBody } = match.binding;
    if (responseBody === '') return { status: 200, body: output };
    const field = findField(method.output, responseBody);
    return { status: 200, body: field ? (output[field.jsonName] ?? null) : null };
  } catch (err) {
    const tooLarge = err instanceof BodyTooLarge;
    const error = tooLarge ? new ConnectError(`request body larger than ${MAX_REQUEST_BYTES} bytes`, Code.ResourceExhausted) : ConnectError.from(err);
    const status = tooLarge ? 413 : (HTTP_STATUS_BY_CODE[error.code] ?? 500);
    // The rest of an oversized body is never read, so the connection cannot be reused.
    return { status, body: statusJson(error, table.registry), headers: tooLarge ? new Headers({ connection: 'close' }) : undefined };
  }
}

/**
 * A signal aborted when the client goes away before its response is complete, for the upstream call to stop.
 * Not on every `close`: that fires after each finished response too, and an abort there built an AbortError
 * (and made the transport build an error of its own) for every request.
 */
export function clientGoneSignal(res: ServerResponse): AbortSignal {
  const abort = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  return abort.signal;
}
