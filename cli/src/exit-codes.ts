import { status as GrpcCode } from '@grpc/grpc-js';

/**
 * The exit codes of iotctl, stable so scripts can branch on them. Server
 * errors map from their gRPC status code ({@link exitCodeOf}); the table is
 * printed by `iotctl --help` and in the README.
 */
export const EXIT = {
  ok: 0,
  /** The command line itself is wrong (unknown option, malformed value): nothing was sent. */
  usage: 1,
  notFound: 2,
  /** The server refused the values: INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION. */
  invalid: 3,
  /** ALREADY_EXISTS, ABORTED. */
  conflict: 4,
  /** UNAUTHENTICATED, or not logged in. */
  unauthenticated: 5,
  permissionDenied: 6,
  /** UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED: worth retrying later. */
  unavailable: 7,
  /** Anything else (INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS, CANCELLED). */
  failed: 8,
  /** Interrupted (Ctrl-C) before a finite command completed, as shells report SIGINT. */
  interrupted: 130,
} as const;

const BY_GRPC_CODE: Partial<Record<GrpcCode, number>> = {
  [GrpcCode.OK]: EXIT.ok,
  [GrpcCode.NOT_FOUND]: EXIT.notFound,
  [GrpcCode.INVALID_ARGUMENT]: EXIT.invalid,
  [GrpcCode.OUT_OF_RANGE]: EXIT.invalid,
  [GrpcCode.FAILED_PRECONDITION]: EXIT.invalid,
  [GrpcCode.ALREADY_EXISTS]: EXIT.conflict,
  [GrpcCode.ABORTED]: EXIT.conflict,
  [GrpcCode.UNAUTHENTICATED]: EXIT.unauthenticated,
  [GrpcCode.PERMISSION_DENIED]: EXIT.permissionDenied,
  [GrpcCode.UNAVAILABLE]: EXIT.unavailable,
  [GrpcCode.DEADLINE_EXCEEDED]: EXIT.unavailable,
  [GrpcCode.RESOURCE_EXHAUSTED]: EXIT.unavailable,
};

/** The exit code for a gRPC status code. */
export function exitCodeOf(code: GrpcCode): number {
  return BY_GRPC_CODE[code] ?? EXIT.failed;
}

/** The table shown at the end of `iotctl --help` (and copied into the README). */
export const EXIT_CODES_HELP = `Exit codes:
  0    success
  1    usage error: unknown command or option, malformed value (nothing was sent)
  2    NOT_FOUND
  3    INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION (field violations are printed)
  4    ALREADY_EXISTS, ABORTED
  5    UNAUTHENTICATED, or not logged in / session expired
  6    PERMISSION_DENIED
  7    UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (retry later)
  8    any other error (INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS, CANCELLED)
  130  interrupted (Ctrl-C) before the command finished; \`telemetry tail\` ends with 0`;
