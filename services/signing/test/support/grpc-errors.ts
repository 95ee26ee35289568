import { status } from '@grpc/grpc-js';
import { BadRequest, RetryInfo } from '../../../../gen/ts/google/rpc/error_details';
import { Status } from '../../../../gen/ts/google/rpc/status';

/** What a failed call told the client. */
export interface CallFailure {
  code: number;
  message: string;
  fieldViolations: Array<{ field: string; description: string }>;
  retryDelayMs?: number;
}

/** Awaits a call expected to fail and decodes its status and google.rpc details. Fails the test when it succeeds. */
export async function failureOf(promise: Promise<unknown>): Promise<CallFailure> {
  try {
    await promise;
  } catch (err) {
    const e = err as { code: number; details: string; metadata?: { get(key: string): unknown[] } };
    const failure: CallFailure = { code: e.code, message: e.details, fieldViolations: [] };
    const [bin] = (e.metadata?.get('grpc-status-details-bin') ?? []) as Buffer[];
    if (bin) {
      for (const detail of Status.decode(bin).details) {
        if (detail.typeUrl.endsWith('google.rpc.BadRequest')) {
          failure.fieldViolations.push(...BadRequest.decode(detail.value).fieldViolations.map((v) => ({ field: v.field, description: v.description })));
        }
        if (detail.typeUrl.endsWith('google.rpc.RetryInfo')) {
          const delay = RetryInfo.decode(detail.value).retryDelay;
          if (delay) failure.retryDelayMs = Number(delay.seconds) * 1000 + Math.round(delay.nanos / 1e6);
        }
      }
    }
    return failure;
  }
  throw new Error('the call succeeded but was expected to fail');
}

/** The status code of a call: OK when it succeeds. */
export async function codeOf(promise: Promise<unknown>): Promise<number> {
  try {
    await promise;
    return status.OK;
  } catch (err) {
    return (err as { code: number }).code;
  }
}

/** Field names of the violations of a failure. */
export function fields(failure: CallFailure): string[] {
  return failure.fieldViolations.map((v) => v.field).sort();
}
