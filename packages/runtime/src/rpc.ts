import { Metadata, ServerUnaryCall, ServerWritableStream, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import { Logger } from './logger';
import { errors, ServiceError, toServiceError } from './errors';
import { unstorableValueViolations } from './validation';
import type { Principal } from './auth/principal';

/** What a handler and every middleware know about the call being served. */
export interface CallContext {
  /** Full method path: `/iot.device.v1.DeviceService/GetDevice`. */
  readonly method: string;
  /** `iot.device.v1.DeviceService`. */
  readonly service: string;
  /** `GetDevice`. */
  readonly rpc: string;
  readonly kind: 'unary' | 'server_stream';
  readonly metadata: Metadata;
  /** Client address as seen by the server. */
  readonly peer: string;
  /** The client's deadline, if it set one. */
  readonly deadline: Date | undefined;
  /** Aborted when the client cancels or the deadline passes. */
  readonly signal: AbortSignal;
  /** Milliseconds left before the deadline (Infinity without one). */
  remainingMs(): number;
  /** The authenticated caller; set by the auth middleware. */
  principal?: Principal;
  /**
   * The device credential of a call to an RPC of access `device_credential`,
   * as sent (`authorization: Bearer <credential>`), not yet verified: set by
   * the auth middleware, verified by the handler.
   */
  deviceCredential?: string;
  /**
   * Server streams only: sends response headers (gRPC initial metadata) now,
   * before the first message; at most once. Envoy's JSON transcoder passes
   * them on as the HTTP response's headers.
   */
  sendHeaders?(headers: Record<string, string>): void;
  /** The call's logger: the service's, with the method and every field {@link addLogFields} added. */
  readonly log: Logger;
  /** Adds fields to every later line of {@link log} (the child logger is made only when a line is logged). */
  addLogFields(fields: Record<string, unknown>): void;
}

/**
 * A middleware wraps every call: it may look at the context and the decoded
 * request, then calls `next()` (or throws). For streaming calls `next()`
 * resolves when the stream ends.
 */
export type Middleware = (ctx: CallContext, request: unknown, next: () => Promise<unknown>) => Promise<unknown>;

type MethodDefinition = {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestDeserialize: (buffer: Buffer) => any;
  responseSerialize: (value: any) => Buffer;
};

type RequestOf<M> = M extends { requestDeserialize: (buffer: Buffer) => infer R } ? R : never;
type ResponseOf<M> = M extends { responseSerialize: (value: infer R) => Buffer } ? R : never;

/** Sends one message of a server stream; resolves once the transport has taken it (one in flight per stream). */
export type Send<T> = (message: T) => Promise<void>;

/** Handler signatures for every method of a ts-proto grpc-js service definition. */
export type Handlers<D> = {
  [K in keyof D]: D[K] extends { responseStream: true }
    ? (request: RequestOf<D[K]>, ctx: CallContext, send: Send<ResponseOf<D[K]>>) => Promise<void>
    : (request: RequestOf<D[K]>, ctx: CallContext) => Promise<ResponseOf<D[K]>>;
};

/** One service definition with its handlers, ready to add to a server. */
export interface ServiceRegistration {
  /** Fully-qualified protobuf service name. */
  readonly name: string;
  readonly definition: Record<string, MethodDefinition>;
  readonly handlers: Record<string, (...args: any[]) => Promise<unknown>>;
}

/** Pairs a generated service definition with its handlers, type-checked against each other. */
export function defineService<D extends Record<string, MethodDefinition>>(definition: D, handlers: Handlers<D>): ServiceRegistration {
  const first = Object.values(definition)[0];
  const name = first.path.split('/')[1];
  return { name, definition, handlers: handlers as ServiceRegistration['handlers'] };
}

/** A call's context, and `finish`, which the transport calls once the call has ended. */
interface ContextOfCall {
  ctx: CallContext;
  finish(): void;
}

function createContext(method: string, kind: CallContext['kind'], call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>, log: Logger): ContextOfCall {
  const [, service, rpc] = method.split('/');
  const controller = new AbortController();
  const rawDeadline = call.getDeadline();
  const deadline = rawDeadline instanceof Date ? rawDeadline : Number.isFinite(rawDeadline) ? new Date(rawDeadline) : undefined;
  const onCancelled = () => controller.abort(errors.unavailable('the client cancelled the call'));
  call.on('cancelled', onCancelled);
  // Until the call ends: a timer left to fire at a finished call's deadline would build an error (and its
  // stack) for every call and keep the call's context alive until then.
  let timer: NodeJS.Timeout | undefined;
  if (deadline) {
    const ms = deadline.getTime() - Date.now();
    timer = setTimeout(() => controller.abort(errors.deadlineExceeded('deadline exceeded')), Math.max(0, ms));
    timer.unref();
  }
  // Most calls log nothing: the child logger (pino's child, with its redaction) is made at the first line.
  const fields: Record<string, unknown> = { rpc: method };
  let child: Logger | undefined;
  const ctx: CallContext = {
    method,
    service,
    rpc,
    kind,
    metadata: call.metadata,
    peer: call.getPeer(),
    deadline,
    signal: controller.signal,
    remainingMs: () => (deadline ? deadline.getTime() - Date.now() : Infinity),
    get log() {
      return (child ??= log.child(fields));
    },
    addLogFields(more) {
      if (child) child = child.child(more);
      else Object.assign(fields, more);
    },
  };
  const finish = () => {
    clearTimeout(timer);
    call.off('cancelled', onCancelled);
  };
  return { ctx, finish };
}

/** What a request that did not decode becomes: the handler never sees it, the client gets INVALID_ARGUMENT. */
const UNDECODABLE = Symbol('undecodable request');

interface Undecodable {
  [UNDECODABLE]: string;
}

function isUndecodable(request: unknown): request is Undecodable {
  return typeof request === 'object' && request !== null && UNDECODABLE in request;
}

/**
 * A service definition whose request decoders never throw: grpc-js answers a
 * request it cannot decode with INTERNAL, which tells the client the server
 * failed, when it was the request that was malformed (truncated, wrong wire
 * types). Such a request runs through the middleware chain (authentication
 * first) and then fails INVALID_ARGUMENT with a `google.rpc.BadRequest`.
 */
export function withTolerantDecoders(definition: ServiceRegistration['definition']): ServiceRegistration['definition'] {
  const tolerant: ServiceRegistration['definition'] = {};
  for (const [key, method] of Object.entries(definition)) {
    tolerant[key] = {
      ...method,
      requestDeserialize: (buffer: Buffer) => {
        try {
          return method.requestDeserialize(buffer);
        } catch (err) {
          return { [UNDECODABLE]: (err as Error).message } satisfies Undecodable;
        }
      },
    };
  }
  return tolerant;
}

/**
 * Why a decoded request is refused before its handler runs (INVALID_ARGUMENT): it did not decode
 * ({@link withTolerantDecoders}), or it holds a value no store can keep: a string with U+0000, a timestamp out of range ({@link unstorableValueViolations}).
 */
function refusal(request: unknown): ServiceError | undefined {
  if (isUndecodable(request)) return errors.invalidArgument([{ field: '', description: `is not a valid protobuf message of the request type (${request[UNDECODABLE]})` }]);
  const unstorable = unstorableValueViolations(request);
  return unstorable.length > 0 ? errors.invalidArgument(unstorable) : undefined;
}

/** Runs `handler` unless {@link refusal} refuses the request. */
function unlessRefused<T>(request: unknown, handler: () => Promise<T>): Promise<T> {
  const refused = refusal(request);
  return refused ? Promise.reject(refused) : handler();
}

function runChain(middlewares: Middleware[], ctx: CallContext, request: unknown, handler: () => Promise<unknown>): Promise<unknown> {
  const step = (index: number): Promise<unknown> => {
    if (index === middlewares.length) return handler();
    return middlewares[index](ctx, request, () => step(index + 1));
  };
  return step(0);
}

/**
 * Turns a registration into grpc-js handlers running the middleware chain.
 * Errors of any kind become a gRPC status (see {@link toServiceError}); the
 * process never crashes because of one call.
 */
export function toGrpcImplementation(registration: ServiceRegistration, middlewares: Middleware[], log: Logger): UntypedServiceImplementation {
  const implementation: UntypedServiceImplementation = {};
  for (const [key, method] of Object.entries(registration.definition)) {
    const handler = registration.handlers[key];
    if (!handler) throw new Error(`${registration.name}: no handler for ${method.path}`);
    if (method.requestStream) throw new Error(`${method.path}: client streaming is not supported`);
    if (!method.responseStream) {
      implementation[key] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const { ctx, finish } = createContext(method.path, 'unary', call, log);
        runChain(middlewares, ctx, call.request, () => unlessRefused(call.request, () => handler(call.request, ctx))).then(
          (response) => {
            finish();
            callback(null, response);
          },
          (err: unknown) => {
            finish();
            callback(toServiceError(err).toGrpc());
          },
        );
      };
    } else {
      implementation[key] = (call: ServerWritableStream<unknown, unknown>) => {
        const { ctx, finish } = createContext(method.path, 'server_stream', call, log);
        ctx.sendHeaders = (headers) => {
          const metadata = new Metadata();
          for (const [name, value] of Object.entries(headers)) metadata.set(name, value);
          call.sendMetadata(metadata);
        };
        // Resolves once HTTP/2 has taken the message (its write callback), not when the stream's
        // object buffer has room: a producer then has one message in flight per stream, and a client
        // that reads slowly holds the producer back instead of piling messages up in memory.
        const send = (message: unknown): Promise<void> => {
          if (ctx.signal.aborted) return Promise.reject(ctx.signal.reason);
          return new Promise<void>((resolve, reject) => {
            const onAbort = () => reject(ctx.signal.reason);
            ctx.signal.addEventListener('abort', onAbort, { once: true });
            call.write(message, (err: Error | null | undefined) => {
              ctx.signal.removeEventListener('abort', onAbort);
              if (err) reject(err);
              else resolve();
            });
          });
        };
        runChain(middlewares, ctx, call.request, () => unlessRefused(call.request, () => handler(call.request, ctx, send))).then(
          () => {
            finish();
            call.end();
          },
          (err: unknown) => {
            finish();
            if (ctx.signal.aborted && call.cancelled) return;
            call.emit('error', toServiceError(err).toGrpc());
          },
        );
      };
    }
  }
  return implementation;
}
