import { GrpcCode, metrics, ServiceError } from '@iot-mesh/runtime';

/** Login attempts by result (`success`, `bad_credentials`, `throttled`): failed-login spikes show guessing. */
const logins = () => metrics.counter('iot_auth_logins_total', 'Login attempts by result (success, bad_credentials, throttled).', ['result']);

/**
 * Counts the outcome of one login: success, refused credentials
 * (UNAUTHENTICATED) or a throttled attempt (RESOURCE_EXHAUSTED). Invalid
 * requests and server errors are not login attempts and are not counted.
 */
export async function countLogin<T>(attempt: Promise<T>): Promise<T> {
  try {
    const result = await attempt;
    logins().inc({ result: 'success' });
    return result;
  } catch (err) {
    const code = err instanceof ServiceError ? err.code : undefined;
    if (code === GrpcCode.UNAUTHENTICATED) logins().inc({ result: 'bad_credentials' });
    if (code === GrpcCode.RESOURCE_EXHAUSTED) logins().inc({ result: 'throttled' });
    throw err;
  }
}
