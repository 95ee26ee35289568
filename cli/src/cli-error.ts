import { Metadata, status as GrpcCode } from '@grpc/grpc-js';
import { rpcStatusDetails } from '@iot-mesh/runtime/client';
import { EXIT, exitCodeOf } from './exit-codes';

/** A failure iotctl detects itself, with the exit code it ends with. */
export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The command line is wrong (exit code 1). */
export class UsageError extends CliError {
  constructor(message: string) {
    super(EXIT.usage, message);
    this.name = 'UsageError';
  }
}

/** What a failed command tells its user: message, the server's field violations, and the exit code. */
export interface Failure {
  exitCode: number;
  message: string;
  /** The gRPC status name (`NOT_FOUND`) when the server answered. */
  grpcCode?: string;
  fieldViolations: Array<{ field: string; description: string }>;
  retryAfterMs?: number;
}

interface GrpcError {
  code: GrpcCode;
  details: string;
  metadata?: Metadata;
}

function isGrpcError(err: unknown): err is GrpcError {
  return typeof (err as GrpcError | null)?.code === 'number' && typeof (err as GrpcError).details === 'string';
}

/** Turns anything a command threw into a {@link Failure}, decoding `google.rpc` details of server errors. */
export function failureOf(err: unknown): Failure {
  if (err instanceof CliError) return { exitCode: err.exitCode, message: err.message, fieldViolations: [] };
  if (!isGrpcError(err)) return { exitCode: EXIT.failed, message: err instanceof Error ? err.message : String(err), fieldViolations: [] };
  const { fieldViolations, retryAfterMs } = rpcStatusDetails(err.metadata);
  return { exitCode: exitCodeOf(err.code), message: err.details, grpcCode: GrpcCode[err.code], fieldViolations, retryAfterMs };
}

/** The lines printed on stderr for a failure: `error: …`, then one line per field violation. */
export function describeFailure(failure: Failure): string {
  const lines = [`error: ${failure.message}${failure.grpcCode ? ` (${failure.grpcCode})` : ''}`];
  for (const v of failure.fieldViolations) lines.push(`  ${v.field}: ${v.description}`);
  if (failure.retryAfterMs !== undefined) lines.push(`  retry after ${Math.ceil(failure.retryAfterMs / 1000)} s`);
  return lines.join('\n') + '\n';
}
