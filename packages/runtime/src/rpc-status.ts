import { BadRequest, ErrorInfo, QuotaFailure, RetryInfo } from '../../../gen/ts/google/rpc/error_details';
import { Status } from '../../../gen/ts/google/rpc/status';
import type { FieldViolation, QuotaViolation } from './errors';
import { durationToMs } from './time';

/**
 * The `google.rpc` details of a failed call, as a client reads them: the
 * counterpart of what a ServiceError (errors.ts) sends, with the same names.
 */
export interface RpcStatusDetails {
  /** From `google.rpc.BadRequest`: which request fields were wrong and why. */
  fieldViolations: FieldViolation[];
  /** From `google.rpc.QuotaFailure`: which quotas were exhausted (absent without one). */
  quotaViolations?: QuotaViolation[];
  /** From `google.rpc.RetryInfo`: how long to wait before trying again. */
  retryAfterMs?: number;
  /** From `google.rpc.ErrorInfo`: the machine-readable reason. */
  reason?: string;
}

/**
 * Decodes the `grpc-status-details-bin` trailer of a failed call (a grpc-js
 * error's `metadata`); details of other types are skipped, and an error
 * without the trailer has no violations and no delay.
 */
export function rpcStatusDetails(metadata: { get(key: string): unknown[] } | undefined): RpcStatusDetails {
  const found: RpcStatusDetails = { fieldViolations: [] };
  const [bin] = (metadata?.get('grpc-status-details-bin') ?? []) as Buffer[];
  if (!bin) return found;
  for (const detail of Status.decode(bin).details) {
    const type = detail.typeUrl.slice(detail.typeUrl.lastIndexOf('/') + 1);
    if (type === 'google.rpc.BadRequest') {
      found.fieldViolations.push(...BadRequest.decode(detail.value).fieldViolations.map((v) => ({ field: v.field, description: v.description })));
    } else if (type === 'google.rpc.QuotaFailure') {
      (found.quotaViolations ??= []).push(...QuotaFailure.decode(detail.value).violations.map((v) => ({ subject: v.subject, description: v.description })));
    } else if (type === 'google.rpc.RetryInfo') {
      found.retryAfterMs = durationToMs(RetryInfo.decode(detail.value).retryDelay);
    } else if (type === 'google.rpc.ErrorInfo') {
      found.reason = ErrorInfo.decode(detail.value).reason;
    }
  }
  return found;
}
