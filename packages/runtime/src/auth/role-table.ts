/**
 * Who may call what, for every RPC of every `iot.*` service, in one place.
 *
 * - `public`: no credentials needed (login, token exchange, keys).
 * - `authenticated`: any caller with valid credentials.
 * - `viewer` / `operator` / `admin`: that role or a higher one in the caller's
 *   tenant (viewer < operator < admin). Handlers still scope every query to
 *   the caller's tenant (see `callerTenant`).
 * - `platform_admin`: an admin of the platform tenant.
 *
 * A method missing here is refused (PERMISSION_DENIED); a test checks that
 * every method in the descriptor set has an entry. When you add an RPC to a
 * proto, add its line here.
 */
export type Access = 'public' | 'authenticated' | 'viewer' | 'operator' | 'admin' | 'platform_admin';

/** Fully-qualified service name → RPC name → access. */
export type RoleTable = Readonly<Record<string, Readonly<Record<string, Access>>>>;

export const ROLE_TABLE: RoleTable = {
  // --- signing ---
  'iot.signing.v1.AuthService': {
    Bootstrap: 'public',
    Login: 'public',
    Refresh: 'public',
    Logout: 'public',
    GetJwks: 'public',
    WhoAmI: 'authenticated',
    RotateSigningKey: 'platform_admin',
  },
  'iot.signing.v1.TenantService': {
    CreateTenant: 'platform_admin',
    ListTenants: 'platform_admin',
    // Own tenant for everyone; other tenants only for platform admins (the handler decides).
    GetTenant: 'authenticated',
  },
  'iot.signing.v1.UserService': {
    CreateUser: 'admin',
    GetUser: 'admin',
    ListUsers: 'admin',
    UpdateUser: 'admin',
    DeleteUser: 'admin',
    // Users change their own password (the handler refuses API keys).
    ChangePassword: 'authenticated',
  },
  'iot.signing.v1.ApiKeyService': {
    CreateApiKey: 'admin',
    ListApiKeys: 'admin',
    RevokeApiKey: 'admin',
  },
  'iot.signing.v1.AuditService': {
    ListAuditEvents: 'admin',
  },
  // --- device ---
  'iot.device.v1.DeviceService': {
    CreateDevice: 'operator',
    GetDevice: 'viewer',
    UpdateDevice: 'operator',
    DeleteDevice: 'operator',
    ListDevices: 'viewer',
    BatchCreateDevices: 'operator',
    WatchDevices: 'viewer',
  },
  'iot.device.v1.CredentialService': {
    IssueCredential: 'operator',
    RotateCredential: 'operator',
    RevokeCredential: 'operator',
  },
  'iot.device.v1.TwinService': {
    GetTwin: 'viewer',
    UpdateDesired: 'operator',
  },
  'iot.device.v1.CommandService': {
    SendCommand: 'operator',
    ListCommands: 'viewer',
  },
  // --- monitoring ---
  'iot.monitoring.v1.TelemetryService': {
    GetLatest: 'viewer',
    QueryHistory: 'viewer',
    ListPoints: 'viewer',
    StreamLive: 'viewer',
  },
  'iot.monitoring.v1.AlertService': {
    CreateAlertRule: 'operator',
    GetAlertRule: 'viewer',
    ListAlertRules: 'viewer',
    UpdateAlertRule: 'operator',
    DeleteAlertRule: 'operator',
    ListAlerts: 'viewer',
    AcknowledgeAlert: 'operator',
    StreamAlerts: 'viewer',
  },
};

/** The access rule of a full method path (`/iot.device.v1.DeviceService/GetDevice`); undefined when none. */
export function accessFor(method: string, table: RoleTable = ROLE_TABLE): Access | undefined {
  const [, service, rpc] = method.split('/');
  if (!service || !rpc) return undefined;
  const rules = table[service];
  return rules && Object.prototype.hasOwnProperty.call(rules, rpc) ? rules[rpc] : undefined;
}
