import type { IncomingMessage, ServerResponse } from 'node:http';
import { once } from 'node:events';
import { create, DescMessage, DescMethodServerStreaming, DescMethodUnary, toJson } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { MAX_FIRMWARE_CHUNK_BYTES } from '@iot-mesh/runtime';
import { compilePathTemplate, matchPathTemplate } from './path-template';
import { clientGoneSignal, HTTP_STATUS_BY_CODE, statusJson } from './rest';
import type { RouteMethod, RouteTable } from './route-table';
import { forwardedHeaders, Upstreams } from './upstreams';

/**
 * The raw image routes (bound on the RPCs answering google.api.HttpBody, which
 * Envoy's transcoder serves as they are) and the RPC this gateway calls for
 * each instead: its first message carries the size and SHA-256, so the answer
 * here also has Content-Length, the digest headers and 206 for a Range.
 */
const DOWNLOAD_METHODS: Record<string, string> = {
  '/iot.device.v1.FirmwareService/GetFirmwareImage': '/iot.device.v1.FirmwareService/DownloadFirmware',
  '/iot.device.v1.FirmwareService/GetDeviceFirmwareImage': '/iot.device.v1.FirmwareService/DownloadDeviceFirmware',
};
const UPLOAD_METHOD = '/iot.device.v1.FirmwareService/UploadFirmwareChunk';
/** `PUT` with the image as the body (any media type; `application/octet-stream` expected). */
export const FIRMWARE_UPLOAD_PATH = '/v1/firmware/{id}/image';
const UPLOAD_TIMEOUT_MS = 60_000;

interface ImageChunk {
  data: Uint8Array;
  sizeBytes: bigint;
  sha256: string;
  offset: bigint;
  length: bigint;
}

/**
 * The status of a failed image call; a size limit is 413 here (the body was
 * too large), not 429. A refused upload's connection is closed: the rest of
 * its body is never read.
 */
function sendStatus(res: ServerResponse, error: ConnectError, table: RouteTable, closeConnection = false): void {
  const status = error.code === Code.ResourceExhausted ? 413 : (HTTP_STATUS_BY_CODE[error.code] ?? 500);
  res.writeHead(status, { 'content-type': 'application/json', ...(closeConnection ? { connection: 'close' } : {}) }).end(JSON.stringify(statusJson(error, table.registry)));
}

/** `Range: bytes=a-b` / `bytes=a-` as offset and length (0 = to the end); undefined without one. Suffix and multiple ranges are refused. */
function parseRange(header: string | undefined): { offset: bigint; length: bigint } | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) throw new ConnectError(`Range ${JSON.stringify(header)} is not one "bytes=first-[last]" range`, Code.InvalidArgument);
  const first = BigInt(m[1]);
  if (m[2] === '') return { offset: first, length: 0n };
  const last = BigInt(m[2]);
  if (last < first) throw new ConnectError(`Range ${header}: last byte before first`, Code.InvalidArgument);
  return { offset: first, length: last - first + 1n };
}

/**
 * Firmware image routes outside JSON transcoding: downloads (for users and
 * for devices with their own credential) write DownloadFirmware's chunks as
 * the raw body with Content-Length, the image's SHA-256 (`x-checksum-sha256`
 * and `repr-digest`) and Range support (206); an upload (`PUT` of the raw
 * image) is sent on as 1 MiB UploadFirmwareChunk calls and answers the
 * completed firmware as JSON. Returns false for any other request.
 */
export function firmwareImageHandler(table: RouteTable, upstreams: Upstreams): (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean> {
  const downloads = table.methods.flatMap((raw) => {
    const chunked = table.methods.find((m) => m.grpcPath === DOWNLOAD_METHODS[raw.grpcPath]);
    return chunked ? [{ bindings: raw.http, chunked }] : [];
  });
  const upload = table.methods.find((m) => m.grpcPath === UPLOAD_METHOD);
  const uploadTemplate = compilePathTemplate(FIRMWARE_UPLOAD_PATH);
  return async (req, res, url) => {
    const headers = () => forwardedHeaders(new Headers(req.headers as Record<string, string>), req.socket.remoteAddress);
    if (req.method === 'PUT' && upload) {
      const bound = matchPathTemplate(uploadTemplate, url.pathname);
      if (!bound) return false;
      await uploadImage(upload, bound[0].value, req, res, headers(), clientGoneSignal(res));
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    for (const { bindings, chunked } of downloads) {
      for (const binding of bindings) {
        const bound = matchPathTemplate(binding.template, url.pathname);
        if (!bound) continue;
        await downloadImage(chunked, Object.fromEntries(bound.map((b) => [b.variable.fieldPath.join('.'), b.value])), req, res, headers(), clientGoneSignal(res));
        return true;
      }
    }
    return false;
  };

  async function uploadImage(route: RouteMethod, id: string, req: IncomingMessage, res: ServerResponse, headers: Headers, signal: AbortSignal): Promise<void> {
    const method = route.method as DescMethodUnary<DescMessage, DescMessage>;
    const transport = upstreams.transportFor(route);
    let offset = 0n;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let answer: unknown;
    const send = async (data: Buffer, last: boolean) => {
      const request = create(method.input, { id, offset, data, last } as never);
      answer = (await transport.unary(method, signal, UPLOAD_TIMEOUT_MS, headers, request)).message;
      offset += BigInt(data.length);
    };
    try {
      for await (const piece of req as AsyncIterable<Buffer>) {
        pending.push(piece);
        pendingBytes += piece.length;
        // More than a chunk held: the first chunk is not the last one, so send it.
        while (pendingBytes > MAX_FIRMWARE_CHUNK_BYTES) {
          const all = Buffer.concat(pending);
          await send(all.subarray(0, MAX_FIRMWARE_CHUNK_BYTES), false);
          pending = [all.subarray(MAX_FIRMWARE_CHUNK_BYTES)];
          pendingBytes = all.length - MAX_FIRMWARE_CHUNK_BYTES;
        }
      }
      await send(Buffer.concat(pending), true);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(toJson(method.output, answer as never, { registry: table.registry })));
    } catch (err) {
      if (signal.aborted) return;
      sendStatus(res, ConnectError.from(err), table, !req.readableEnded);
    }
  }

  async function downloadImage(route: RouteMethod, fields: Record<string, string>, req: IncomingMessage, res: ServerResponse, headers: Headers, signal: AbortSignal): Promise<void> {
    const method = route.method as DescMethodServerStreaming<DescMessage, DescMessage>;
    let started = false;
    try {
      const range = parseRange(req.headers.range);
      const request = create(method.input, { id: fields.id, ...(fields.tenant_id ? { tenantId: fields.tenant_id } : {}), offset: range?.offset ?? 0n, length: range?.length ?? 0n } as never);
      const response = await upstreams.transportFor(route).stream(method, signal, undefined, headers, (async function* () {
        yield request;
      })(), undefined);
      for await (const message of response.message as AsyncIterable<{ chunk?: ImageChunk }>) {
        const chunk = message.chunk!;
        if (!started) {
          started = true;
          const digest = Buffer.from(chunk.sha256, 'hex').toString('base64');
          const end = chunk.offset + chunk.length - 1n;
          res.writeHead(range ? 206 : 200, {
            'content-type': 'application/octet-stream',
            'content-length': String(chunk.length),
            'accept-ranges': 'bytes',
            'x-checksum-sha256': chunk.sha256,
            'repr-digest': `sha-256=:${digest}:`,
            'cache-control': 'private, max-age=0',
            ...(range ? { 'content-range': `bytes ${chunk.offset}-${end}/${chunk.sizeBytes}` } : {}),
          });
          if (req.method === 'HEAD') {
            res.end();
            return;
          }
        }
        if (chunk.data.byteLength > 0 && !res.write(chunk.data)) await once(res, 'drain', { signal });
      }
      res.end();
    } catch (err) {
      if (signal.aborted) return;
      if (started) res.destroy();
      else sendStatus(res, ConnectError.from(err), table);
    }
  }
}

type Json = Record<string, unknown>;
const RAW_IMAGE = { type: 'string', contentMediaType: 'application/octet-stream' };

/**
 * What the OpenAPI document says of these routes, which carry raw bytes
 * rather than proto3 JSON: the downloads' answers (200, or 206 for a Range)
 * with their digest headers. (The raw `PUT` upload is the gateway's own,
 * beside UploadFirmwareChunk's binding; the README describes it.) `paths` is
 * the document's, changed in place.
 */
export function describeFirmwareImageRoutes(paths: Record<string, Record<string, Json>>): void {
  const digestHeaders = {
    'content-length': { schema: { type: 'integer' } },
    'x-checksum-sha256': { description: 'SHA-256 of the whole image, lower-case hex.', schema: { type: 'string' } },
    'repr-digest': { description: 'RFC 9530: `sha-256=:<base64>:` of the whole image.', schema: { type: 'string' } },
  };
  for (const [path, item] of Object.entries(paths)) {
    if (!/^\/v1\/(tenants\/\{tenant_id\}\/)?firmware\/\{id\}\/image$/.test(path) || !item.get) continue;
    const get = item.get as Json & { responses: Json; parameters?: Json[] };
    // offset and length come from the Range header here, not the query.
    get.parameters = [...(get.parameters ?? []).filter((p) => p.in === 'path'), { name: 'range', in: 'header', required: false, description: 'One `bytes=first-[last]` range.', schema: { type: 'string' } }];
    get.responses = {
      ...get.responses,
      '200': { description: 'The image.', headers: digestHeaders, content: { 'application/octet-stream': { schema: RAW_IMAGE } } },
      '206': { description: 'The range asked for (`content-range` says which).', headers: { ...digestHeaders, 'content-range': { schema: { type: 'string' } } }, content: { 'application/octet-stream': { schema: RAW_IMAGE } } },
    };
  }
}
