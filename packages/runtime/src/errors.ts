import { Metadata, status as GrpcCode } from '@grpc/grpc-js';
import { Any } from '../../../gen/ts/google/protobuf/any';
import { BadRequest, ErrorInfo, QuotaFailure, RetryInfo } from '../../../gen/ts/google/rpc/error_details';
import { Status } from '../../../gen/ts/google/rpc/status';
import { msToDuration } from './time';

export { GrpcCode };

/** One invalid field of a request, as `google.rpc.BadRequest.FieldViolation`. */
export interface FieldViolation {
  /** Path of the field in the request, in proto field names: `device.labels`. */
  field: string;
  description: string;
}

/** One exhausted quota, as `google.rpc.QuotaFailure.Violation`. */
export interface QuotaViolation {
  /** What the quota is counted on: `tenant:<id>`. */
  subject: string;
  /** Which quota and its limit, e.g. "devices per tenant (DEVICE_MAX_PER_TENANT = 100000)". */
  description: string;
}

/** What an error carries besides its code and message. */
export interface ServiceErrorOptions {
  fieldViolations?: FieldViolation[];
  /** Sent as `google.rpc.QuotaFailure`: which quota a RESOURCE_EXHAUSTED hit (waiting does not help; freeing some does). */
  quotaViolations?: QuotaViolation[];
  /** Sent as `google.rpc.RetryInfo` so a client knows when to try again. */
  retryAfterMs?: number;
  /** Machine-readable reason, sent as `google.rpc.ErrorInfo`. */
  reason?: string;
  cause?: unknown;
}

/**
 * The one error type of the platform: a gRPC status code, a message meant for
 * the client, and optional `google.rpc` details. Anything else thrown by a
 * handler is turned into one by {@link toServiceError}.
 */
export class ServiceError extends Error {
  readonly code: GrpcCode;
  readonly fieldViolations: FieldViolation[];
  readonly quotaViolations: QuotaViolation[];
  readonly retryAfterMs?: number;
  readonly reason?: string;

  constructor(code: GrpcCode, message: string, options: ServiceErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = 'ServiceError';
    this.code = code;
    this.fieldViolations = options.fieldViolations ?? [];
    this.quotaViolations = options.quotaViolations ?? [];
    this.retryAfterMs = options.retryAfterMs;
    this.reason = options.reason;
  }

  /** `google.rpc.Status` with details, as sent in `grpc-status-details-bin` (texts capped as {@link headerText} says). */
  toStatus(): Status {
    const details: Any[] = [];
    if (this.fieldViolations.length > 0) {
      const violations = this.fieldViolations.slice(0, MAX_VIOLATIONS).map((v) => ({ field: headerText(v.field, 200), description: headerText(v.description, 300), reason: '', localizedMessage: undefined }));
      details.push({ typeUrl: 'type.googleapis.com/google.rpc.BadRequest', value: Buffer.from(BadRequest.encode({ fieldViolations: violations }).finish()) });
    }
    if (this.quotaViolations.length > 0) {
      const violations = this.quotaViolations.slice(0, MAX_VIOLATIONS).map((v) => ({ subject: headerText(v.subject, 200), description: headerText(v.description, 300) }));
      details.push({ typeUrl: 'type.googleapis.com/google.rpc.QuotaFailure', value: Buffer.from(QuotaFailure.encode(QuotaFailure.fromPartial({ violations })).finish()) });
    }
    if (this.retryAfterMs !== undefined) {
      details.push({ typeUrl: 'type.googleapis.com/google.rpc.RetryInfo', value: Buffer.from(RetryInfo.encode({ retryDelay: msToDuration(this.retryAfterMs) }).finish()) });
    }
    if (this.reason) {
      details.push({
        typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo',
        value: Buffer.from(ErrorInfo.encode({ reason: this.reason, domain: 'iot-mesh', metadata: {} }).finish()),
      });
    }
    return { code: this.code, message: headerText(this.message, MAX_MESSAGE), details };
  }

  /** The object grpc-js sends to the client: code, message and binary details. */
  toGrpc(): { code: GrpcCode; details: string; metadata: Metadata } {
    const metadata = new Metadata();
    if (this.fieldViolations.length > 0 || this.quotaViolations.length > 0 || this.retryAfterMs !== undefined || this.reason) {
      metadata.set('grpc-status-details-bin', Buffer.from(Status.encode(this.toStatus()).finish()));
    }
    return { code: this.code, details: headerText(this.message, MAX_MESSAGE), metadata };
  }
}

/** Characters of a status message sent (`grpc-message`, `google.rpc.Status.message`). */
const MAX_MESSAGE = 1000;

/** Field violations sent in `google.rpc.BadRequest`; the message still counts all of them. */
const MAX_VIOLATIONS = 20;

/**
 * A text of a status as it may go into an HTTP/2 trailer. Messages echo
 * request values (`device "<id>" not found`): a 1 MiB id made a 1 MiB
 * `grpc-message`, far above what HTTP/2 peers accept in a header block, and
 * the client's connection dropped, failing every other call on it
 * UNAVAILABLE. So texts are cut to `max` characters. And grpc-js
 * percent-encodes the message with encodeURIComponent, which throws (and took
 * the process down) on a lone surrogate, such as a request string's or one
 * the cut leaves: such halves go out as U+FFFD.
 */
function headerText(text: string, max: number): string {
  const cut = text.length > max ? `${text.slice(0, max)}… (${text.length - max} more characters)` : text;
  return cut.replace(/[\ud800-\udfff]/gu, '\ufffd');
}

/** Shorthands for the errors handlers throw most. */
export const errors = {
  invalidArgument(violations: FieldViolation[] | string): ServiceError {
    if (typeof violations === 'string') return new ServiceError(GrpcCode.INVALID_ARGUMENT, violations);
    const summary = violations.map((v) => `${v.field}: ${v.description}`).join('; ');
    return new ServiceError(GrpcCode.INVALID_ARGUMENT, `invalid request: ${summary}`, { fieldViolations: violations });
  },
  notFound(kind: string, id: string): ServiceError {
    return new ServiceError(GrpcCode.NOT_FOUND, `${kind} ${JSON.stringify(id)} not found`);
  },
  alreadyExists(message: string): ServiceError {
    return new ServiceError(GrpcCode.ALREADY_EXISTS, message);
  },
  unauthenticated(message = 'missing or invalid credentials'): ServiceError {
    return new ServiceError(GrpcCode.UNAUTHENTICATED, message);
  },
  permissionDenied(message = 'the caller may not do this'): ServiceError {
    return new ServiceError(GrpcCode.PERMISSION_DENIED, message);
  },
  /** `reason` (sent as `google.rpc.ErrorInfo`) tells a caller which precondition failed. */
  failedPrecondition(message: string, reason?: string): ServiceError {
    return new ServiceError(GrpcCode.FAILED_PRECONDITION, message, { reason });
  },
  aborted(message: string): ServiceError {
    return new ServiceError(GrpcCode.ABORTED, message);
  },
  resourceExhausted(message: string, retryAfterMs: number): ServiceError {
    return new ServiceError(GrpcCode.RESOURCE_EXHAUSTED, message, { retryAfterMs });
  },
  unavailable(message: string, cause?: unknown): ServiceError {
    return new ServiceError(GrpcCode.UNAVAILABLE, message, { cause });
  },
  deadlineExceeded(message: string): ServiceError {
    return new ServiceError(GrpcCode.DEADLINE_EXCEEDED, message);
  },
  internal(cause?: unknown): ServiceError {
    return new ServiceError(GrpcCode.INTERNAL, 'internal error', { cause });
  },
};

const NETWORK_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/** PostgreSQL SQLSTATEs that mean "the database is not there right now". */
function isPgUnavailable(code: string): boolean {
  return code.startsWith('08') || code === '57P01' || code === '57P03' || code === '53300';
}

/**
 * Turns anything thrown into a {@link ServiceError}: service errors pass
 * through, known driver errors get their proper code, everything else becomes
 * INTERNAL with a message that reveals nothing.
 */
export function toServiceError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  const e = err as { code?: unknown; message?: string; name?: string } | null;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code && /^[0-9A-Z]{5}$/.test(code)) {
    if (code === '23505') return new ServiceError(GrpcCode.ALREADY_EXISTS, 'already exists', { cause: err });
    if (code === '23503') return new ServiceError(GrpcCode.FAILED_PRECONDITION, 'a referenced resource does not exist', { cause: err });
    if (code === '22P02' || code === '22003' || code === '22007' || code === '22008') {
      return new ServiceError(GrpcCode.INVALID_ARGUMENT, 'a value is malformed or out of range', { cause: err });
    }
    if (code === '40001' || code === '40P01') return new ServiceError(GrpcCode.ABORTED, 'conflict, retry', { cause: err });
    if (isPgUnavailable(code)) return errors.unavailable('database unavailable', err);
  }
  if (code && NETWORK_ERROR_CODES.has(code)) return errors.unavailable('a dependency is unavailable', err);
  if (e?.message && /Connection terminated|connection is closed|Stream isn't writeable|CONNECTION_CLOSED/i.test(e.message)) {
    return errors.unavailable('a dependency is unavailable', err);
  }
  return errors.internal(err);
}
