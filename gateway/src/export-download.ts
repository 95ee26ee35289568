import type { IncomingMessage, ServerResponse } from 'node:http';
import { once } from 'node:events';
import { DescMessage, DescMethodServerStreaming, fromJson, Message } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { compilePathTemplate } from './path-template';
import { clientGoneSignal, HTTP_STATUS_BY_CODE, restRequestJson, statusJson } from './rest';
import type { RouteTable } from './route-table';
import { forwardedHeaders, Upstreams } from './upstreams';

/** The download route: `GET /v1/export?device_ids=…&format=parquet&time_range.start=…`. */
export const EXPORT_DOWNLOAD_PATH = '/v1/export';
const EXPORT_METHOD = '/iot.monitoring.v1.ExportService/ExportPoints';
/** `format=csv|ndjson|parquet` as well as the enum's own names. */
const FORMAT_NAMES: Record<string, string> = { csv: 'EXPORT_FORMAT_CSV', ndjson: 'EXPORT_FORMAT_NDJSON', parquet: 'EXPORT_FORMAT_PARQUET' };

interface ExportChunk {
  chunk: Uint8Array;
  contentType: string;
  fileName: string;
}

function sendStatus(res: ServerResponse, error: ConnectError, table: RouteTable): void {
  res.writeHead(HTTP_STATUS_BY_CODE[error.code] ?? 500, { 'content-type': 'application/json' }).end(JSON.stringify(statusJson(error, table.registry)));
}

/**
 * Export downloads: the REST transcoder answers one JSON message, so this
 * route calls ExportPoints' server stream itself and writes each chunk to the
 * HTTP body as it arrives (waiting for the socket to drain before reading the
 * next), under the file's own media type. An error before the first byte is a
 * `google.rpc.Status` JSON answer; after it the connection is cut, so a
 * download never looks complete when it is not.
 */
export function exportDownloadHandler(table: RouteTable, upstreams: Upstreams): (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> {
  const route = table.methods.find((m) => m.grpcPath === EXPORT_METHOD);
  return async (req, res, url) => {
    if (!route) return sendStatus(res, new ConnectError('export is not served by this gateway', Code.Unimplemented), table);
    if (req.method !== 'GET') return sendStatus(res, new ConnectError(`method ${req.method} is not allowed on ${url.pathname}`, Code.Unimplemented), table);
    const method = route.method as DescMethodServerStreaming<DescMessage, DescMessage>;
    const signal = clientGoneSignal(res);
    let started = false;
    try {
      const query = new URLSearchParams(url.searchParams);
      const format = query.get('format');
      if (format && FORMAT_NAMES[format]) query.set('format', FORMAT_NAMES[format]);
      const binding = { verb: 'GET' as const, template: compilePathTemplate(EXPORT_DOWNLOAD_PATH), body: '', responseBody: '' };
      const json = await restRequestJson({ route, binding, pathBindings: [] }, query, req);
      let request: Message;
      try {
        request = fromJson(method.input, json, { registry: table.registry });
      } catch (err) {
        throw new ConnectError((err as Error).message, Code.InvalidArgument);
      }
      const headers = forwardedHeaders(new Headers(req.headers as Record<string, string>), req.socket.remoteAddress);
      const response = await upstreams.transportFor(route).stream(method, signal, undefined, headers, (async function* () {
        yield request;
      })(), undefined);
      for await (const message of response.message as AsyncIterable<ExportChunk>) {
        if (!started) {
          started = true;
          res.writeHead(200, {
            'content-type': message.contentType || 'application/octet-stream',
            'content-disposition': `attachment; filename="${message.fileName.replace(/["\\\r\n]/g, '_')}"`,
            'cache-control': 'no-store',
          });
        }
        if (message.chunk.byteLength > 0 && !res.write(message.chunk)) await once(res, 'drain', { signal: signal });
      }
      if (!started) res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end();
    } catch (err) {
      if (signal.aborted) return; // the client went away: nothing to answer
      if (started) res.destroy();
      else sendStatus(res, ConnectError.from(err), table);
    }
  };
}
