import { status } from '@grpc/grpc-js';
import { rpcStatusDetails } from '@iot-mesh/runtime';

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
    const { fieldViolations, retryAfterMs } = rpcStatusDetails(e.metadata);
    return { code: e.code, message: e.details, fieldViolations, retryDelayMs: retryAfterMs };
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
