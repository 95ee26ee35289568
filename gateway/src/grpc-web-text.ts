import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from '@connectrpc/connect/protocol';

/**
 * `application/grpc-web-text` is gRPC-Web with base64 bodies, used by clients
 * that cannot read binary streams. Connect serves binary gRPC-Web only, so
 * text requests are decoded into a binary request and the binary response
 * is encoded back; the framing itself stays Connect's.
 */
const TEXT_CONTENT_TYPE = /^application\/grpc-web-text(\+proto)?(;.*)?$/i;

/** True when a request uses the text encoding. */
export function isGrpcWebText(contentType: string | null): boolean {
  return contentType !== null && TEXT_CONTENT_TYPE.test(contentType);
}

/** Decodes a stream of base64 text; padding may end any piece the client sent. */
async function* decodeBase64(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  let pending = '';
  for await (const chunk of body) {
    pending += Buffer.from(chunk).toString('latin1').replace(/\s+/g, '');
    for (;;) {
      const whole = pending.length - (pending.length % 4);
      if (whole === 0) break;
      // A 4-character group holding '=' ends one padded piece; decode up to it.
      const pad = pending.indexOf('=');
      const cut = pad >= 0 && pad < whole ? pad - (pad % 4) + 4 : whole;
      yield Buffer.from(pending.slice(0, cut), 'base64');
      pending = pending.slice(cut);
    }
  }
  if (pending.length > 0) throw new Error('grpc-web-text body is not valid base64');
}

/** Encodes a byte stream as one continuous base64 text (no padding until the end). */
async function* encodeBase64(body: AsyncIterable<Uint8Array> | Uint8Array): AsyncIterable<Uint8Array> {
  let rest = Buffer.alloc(0);
  const chunks = body instanceof Uint8Array ? [body] : body;
  for await (const chunk of chunks) {
    const all = Buffer.concat([rest, Buffer.from(chunk)]);
    const whole = all.length - (all.length % 3);
    rest = all.subarray(whole);
    if (whole > 0) yield Buffer.from(all.subarray(0, whole).toString('base64'), 'latin1');
  }
  if (rest.length > 0) yield Buffer.from(rest.toString('base64'), 'latin1');
}

/** Wraps a binary gRPC-Web handler so it also serves the text encoding. */
export function withGrpcWebText(handler: UniversalHandler): (request: UniversalServerRequest) => Promise<UniversalServerResponse> {
  return async (request) => {
    const contentType = request.header.get('content-type');
    if (!isGrpcWebText(contentType)) return handler(request);
    const header = new Headers(request.header);
    header.set('content-type', 'application/grpc-web+proto');
    const response = await handler({ ...request, header, body: decodeBase64(request.body as AsyncIterable<Uint8Array>) });
    const responseHeader = new Headers(response.header);
    const responseType = responseHeader.get('content-type');
    if (responseType && /^application\/grpc-web/i.test(responseType)) responseHeader.set('content-type', 'application/grpc-web-text+proto');
    return { ...response, header: responseHeader, body: response.body === undefined ? undefined : encodeBase64(response.body) };
  };
}
