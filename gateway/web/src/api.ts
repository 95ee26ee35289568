import { Code, ConnectError, createClient, Interceptor } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { CommandService } from '../../../gen/es/iot/device/v1/command_pb';
import { CredentialService } from '../../../gen/es/iot/device/v1/credential_pb';
import { DeviceService } from '../../../gen/es/iot/device/v1/device_pb';
import { TwinService } from '../../../gen/es/iot/device/v1/twin_pb';
import { AlertService } from '../../../gen/es/iot/monitoring/v1/alerts_pb';
import { TelemetryService } from '../../../gen/es/iot/monitoring/v1/telemetry_pb';
import { AuthService } from '../../../gen/es/iot/signing/v1/auth_pb';
import { currentSession, setSession } from './session';

/** The gateway serving this page also serves the API (gRPC-Web on the same origin). */
const baseUrl = window.location.origin;

/** Without auth: used for login and token refresh. */
const plainTransport = createGrpcWebTransport({ baseUrl });
const authClient = createClient(AuthService, plainTransport);

let refreshing: Promise<boolean> | undefined;

/** Exchanges the refresh token for a new pair once, however many calls failed at the same time. */
async function refreshTokens(): Promise<boolean> {
  const session = currentSession();
  if (!session) return false;
  refreshing ??= authClient
    .refresh({ refreshToken: session.refreshToken })
    .then((res) => {
      if (!res.tokens) return false;
      setSession({ ...session, accessToken: res.tokens.accessToken, refreshToken: res.tokens.refreshToken });
      return true;
    })
    .catch(() => {
      setSession(undefined);
      return false;
    })
    .finally(() => {
      refreshing = undefined;
    });
  return refreshing;
}

/** Adds the bearer token; on UNAUTHENTICATED refreshes it once and retries unary calls. */
const authInterceptor: Interceptor = (next) => async (req) => {
  const token = currentSession()?.accessToken;
  if (token) req.header.set('authorization', `Bearer ${token}`);
  try {
    return await next(req);
  } catch (err) {
    if (!(err instanceof ConnectError) || err.code !== Code.Unauthenticated || req.stream || !token) throw err;
    if (!(await refreshTokens())) throw err;
    req.header.set('authorization', `Bearer ${currentSession()?.accessToken ?? ''}`);
    return next(req);
  }
};

const transport = createGrpcWebTransport({ baseUrl, interceptors: [authInterceptor] });

/** Typed clients for every service the dashboard uses. */
export const api = {
  auth: authClient,
  authed: createClient(AuthService, transport),
  devices: createClient(DeviceService, transport),
  credentials: createClient(CredentialService, transport),
  twins: createClient(TwinService, transport),
  commands: createClient(CommandService, transport),
  telemetry: createClient(TelemetryService, transport),
  alerts: createClient(AlertService, transport),
};

/** A message for people: the service's own message for known failures. */
export function errorMessage(err: unknown): string {
  if (err instanceof ConnectError) return `${Code[err.code]}: ${err.rawMessage}`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs a server stream for as long as `signal` is not aborted, reconnecting
 * with backoff when it ends or fails (deploys, network blips).
 */
export async function followStream<T>(open: (signal: AbortSignal) => AsyncIterable<T>, onMessage: (message: T) => void, signal: AbortSignal, onState?: (connected: boolean) => void): Promise<void> {
  let delay = 500;
  while (!signal.aborted) {
    try {
      onState?.(true);
      for await (const message of open(signal)) {
        delay = 500;
        onMessage(message);
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ConnectError && (err.code === Code.Unauthenticated || err.code === Code.PermissionDenied)) {
        onState?.(false);
        if (err.code === Code.Unauthenticated && (await refreshTokens())) continue;
        return;
      }
    }
    onState?.(false);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10_000);
  }
}
