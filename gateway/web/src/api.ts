import { Code, ConnectError, createClient, Interceptor } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { BadRequestSchema } from '../../../gen/es/google/rpc/error_details_pb';
import { CommandService } from '../../../gen/es/iot/device/v1/command_pb';
import { CredentialService } from '../../../gen/es/iot/device/v1/credential_pb';
import { DeviceService } from '../../../gen/es/iot/device/v1/device_pb';
import { DeviceSessionService } from '../../../gen/es/iot/device/v1/sessions_pb';
import { DeviceTypeService } from '../../../gen/es/iot/device/v1/device_types_pb';
import { CampaignService, FirmwareService } from '../../../gen/es/iot/device/v1/firmware_pb';
import { GroupService } from '../../../gen/es/iot/device/v1/groups_pb';
import { JobService } from '../../../gen/es/iot/device/v1/jobs_pb';
import { ProvisioningService } from '../../../gen/es/iot/device/v1/provisioning_pb';
import { TwinService } from '../../../gen/es/iot/device/v1/twin_pb';
import { AlertService } from '../../../gen/es/iot/monitoring/v1/alerts_pb';
import { DeadLetterService } from '../../../gen/es/iot/monitoring/v1/dead_letters_pb';
import { RetentionService } from '../../../gen/es/iot/monitoring/v1/retention_pb';
import { NotificationChannelService, RuleService } from '../../../gen/es/iot/monitoring/v1/rules_pb';
import { TelemetryService } from '../../../gen/es/iot/monitoring/v1/telemetry_pb';
import { ApiKeyService } from '../../../gen/es/iot/signing/v1/api_keys_pb';
import { AuditService } from '../../../gen/es/iot/signing/v1/audit_pb';
import { AuthService } from '../../../gen/es/iot/signing/v1/auth_pb';
import { TenantService } from '../../../gen/es/iot/signing/v1/tenants_pb';
import { UserService } from '../../../gen/es/iot/signing/v1/users_pb';
import { currentSession, setSession, withSessionLock } from './session';

/** The gateway serving this page also serves the API (gRPC-Web on the same origin). */
const baseUrl = window.location.origin;

/** Without auth: used for login and token refresh. */
const plainTransport = createGrpcWebTransport({ baseUrl });
const authClient = createClient(AuthService, plainTransport);

let refreshing: Promise<boolean> | undefined;

/**
 * Exchanges the refresh token for a new pair once, however many calls (and
 * tabs) failed at the same time: `failedToken` is the access token that was
 * refused; when another tab has already replaced it, its new pair is used.
 */
async function refreshTokens(failedToken?: string): Promise<boolean> {
  refreshing ??= withSessionLock(async () => {
    const session = currentSession();
    if (!session) return false;
    if (failedToken && session.accessToken !== failedToken) return true;
    try {
      const res = await authClient.refresh({ refreshToken: session.refreshToken });
      if (!res.tokens) return false;
      setSession({ ...session, accessToken: res.tokens.accessToken, refreshToken: res.tokens.refreshToken });
      return true;
    } catch {
      setSession(undefined);
      return false;
    }
  }).finally(() => {
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
    if (!(await refreshTokens(token))) throw err;
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
  sessions: createClient(DeviceSessionService, transport),
  credentials: createClient(CredentialService, transport),
  twins: createClient(TwinService, transport),
  commands: createClient(CommandService, transport),
  deviceTypes: createClient(DeviceTypeService, transport),
  groups: createClient(GroupService, transport),
  jobs: createClient(JobService, transport),
  firmware: createClient(FirmwareService, transport),
  campaigns: createClient(CampaignService, transport),
  provisioning: createClient(ProvisioningService, transport),
  telemetry: createClient(TelemetryService, transport),
  alerts: createClient(AlertService, transport),
  deadLetters: createClient(DeadLetterService, transport),
  rules: createClient(RuleService, transport),
  channels: createClient(NotificationChannelService, transport),
  retention: createClient(RetentionService, transport),
  users: createClient(UserService, transport),
  apiKeys: createClient(ApiKeyService, transport),
  tenants: createClient(TenantService, transport),
  audit: createClient(AuditService, transport),
};

/** A message for people: the service's own message (and its field violations) for known failures. */
export function errorMessage(err: unknown): string {
  if (err instanceof ConnectError) {
    const violations = err.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => `${v.field}: ${v.description}`));
    return `${Code[err.code]}: ${err.rawMessage}${violations.length > 0 ? ` (${violations.join('; ')})` : ''}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Answers a stream gets again however often it is reopened: the request itself is refused. */
const FINAL_CODES = new Set([Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition, Code.PermissionDenied, Code.Unimplemented]);

/**
 * Runs a server stream for as long as `signal` is not aborted, reconnecting
 * with backoff when it ends or fails (deploys, network blips). Every failure
 * goes to `onError` (for the page to show the server's message); one that
 * reopening cannot change (a refused request, a refused caller) ends it.
 */
export async function followStream<T>(open: (signal: AbortSignal) => AsyncIterable<T>, onMessage: (message: T) => void, signal: AbortSignal, onState?: (connected: boolean) => void, onError?: (err: unknown) => void): Promise<void> {
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
      if (err instanceof ConnectError && err.code === Code.Unauthenticated) {
        onState?.(false);
        if (await refreshTokens(currentSession()?.accessToken)) continue;
        onError?.(err);
        return;
      }
      onError?.(err);
      if (err instanceof ConnectError && FINAL_CODES.has(err.code)) {
        onState?.(false);
        return;
      }
    }
    onState?.(false);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10_000);
  }
}
