import { status as GrpcStatus } from '@grpc/grpc-js';

/**
 * gRPC status codes as Go's `codes.Code.String()` spells them (`OK`,
 * `NotFound`, `DeadlineExceeded`), which is what go-grpc-prometheus puts in the
 * `grpc_code` label and what existing Grafana dashboards and alerts match on.
 */
const GO_CODE_NAMES: Record<number, string> = {
  [GrpcStatus.OK]: 'OK',
  [GrpcStatus.CANCELLED]: 'Canceled',
  [GrpcStatus.UNKNOWN]: 'Unknown',
  [GrpcStatus.INVALID_ARGUMENT]: 'InvalidArgument',
  [GrpcStatus.DEADLINE_EXCEEDED]: 'DeadlineExceeded',
  [GrpcStatus.NOT_FOUND]: 'NotFound',
  [GrpcStatus.ALREADY_EXISTS]: 'AlreadyExists',
  [GrpcStatus.PERMISSION_DENIED]: 'PermissionDenied',
  [GrpcStatus.RESOURCE_EXHAUSTED]: 'ResourceExhausted',
  [GrpcStatus.FAILED_PRECONDITION]: 'FailedPrecondition',
  [GrpcStatus.ABORTED]: 'Aborted',
  [GrpcStatus.OUT_OF_RANGE]: 'OutOfRange',
  [GrpcStatus.UNIMPLEMENTED]: 'Unimplemented',
  [GrpcStatus.INTERNAL]: 'Internal',
  [GrpcStatus.UNAVAILABLE]: 'Unavailable',
  [GrpcStatus.DATA_LOSS]: 'DataLoss',
  [GrpcStatus.UNAUTHENTICATED]: 'Unauthenticated',
};

/** The `grpc_code` label value of a numeric status code. */
export function grpcCodeName(code: number): string {
  return GO_CODE_NAMES[code] ?? `Code(${code})`;
}

/** `grpc_type` label values, as go-grpc-prometheus names them. */
export type GrpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

/** The `grpc_type` of a method from its streaming flags. */
export function grpcType(requestStream: boolean, responseStream: boolean): GrpcType {
  if (requestStream) return responseStream ? 'bidi_stream' : 'client_stream';
  return responseStream ? 'server_stream' : 'unary';
}

/** `/pkg.Service/Method` → `['pkg.Service', 'Method']`. */
export function splitMethodPath(path: string): [service: string, method: string] {
  const [, service = 'unknown', method = 'unknown'] = path.split('/');
  return [service, method];
}
