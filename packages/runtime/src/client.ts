import { CallOptions, ChannelCredentials, Client, ClientOptions, ClientReadableStream, Metadata, ServiceError as GrpcServiceError } from '@grpc/grpc-js';
import { ClientMethods, grpcClientMetrics } from './observability/grpc-client-metrics';

/** Deadline for calls that do not say otherwise. */
export const DEFAULT_DEADLINE_MS = 10_000;

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: GrpcServiceError | null, response: Res) => void,
) => unknown;

/** Options of one client call. */
export interface CallSettings {
  /** Sent as `authorization` when set: `Bearer <jwt>` or `ApiKey <secret>`. */
  authorization?: string;
  metadata?: Metadata;
  /** Deadline from now; default {@link DEFAULT_DEADLINE_MS}. */
  deadlineMs?: number;
}

function metadataOf(settings: CallSettings): Metadata {
  const metadata = settings.metadata?.clone() ?? new Metadata();
  if (settings.authorization) metadata.set('authorization', settings.authorization);
  return metadata;
}

/**
 * Calls a unary method of a generated grpc-js client as a promise, always
 * with a deadline: `await unary(client, client.getDevice, { id }, { authorization })`.
 */
export function unary<C extends Client, Req, Res>(client: C, method: UnaryMethod<Req, Res>, request: Req, settings: CallSettings = {}): Promise<Res> {
  const deadline = new Date(Date.now() + (settings.deadlineMs ?? DEFAULT_DEADLINE_MS));
  return new Promise((resolve, reject) => {
    method.call(client, request, metadataOf(settings), { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

type StreamMethod<Req, Res> = (request: Req, metadata: Metadata, options?: Partial<CallOptions>) => ClientReadableStream<Res>;

/** Opens a server stream of a generated client; streams carry no deadline unless given. */
export function serverStream<C extends Client, Req, Res>(client: C, method: StreamMethod<Req, Res>, request: Req, settings: CallSettings = {}): ClientReadableStream<Res> {
  const options: Partial<CallOptions> = settings.deadlineMs ? { deadline: new Date(Date.now() + settings.deadlineMs) } : {};
  return method.call(client, request, metadataOf(settings), options);
}

/** Options of {@link insecureClient}. */
export interface ClientSettings {
  /** Record `grpc_client_*` Prometheus metrics for this client's calls (default true). */
  metrics?: boolean;
  /** Further grpc-js channel and client options (interceptors run after the metrics one). */
  options?: Partial<ClientOptions>;
}

/** A generated client for an insecure address (inside the mesh), with client metrics unless turned off. */
export function insecureClient<C extends Client>(
  ClientClass: new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>) => C,
  address: string,
  settings: ClientSettings = {},
): C {
  const methods = (ClientClass as { service?: ClientMethods }).service;
  const interceptors = [...(settings.metrics === false ? [] : [grpcClientMetrics(methods)]), ...(settings.options?.interceptors ?? [])];
  return new ClientClass(address, ChannelCredentials.createInsecure(), { ...settings.options, interceptors });
}
