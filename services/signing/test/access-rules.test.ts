import * as protoLoader from '@grpc/proto-loader';
import { accessRuleOf, AccessRules, descriptorAccessRules, descriptorRegistry, methodsWithoutAccess, readDescriptorSet } from '@iot-mesh/runtime';

/**
 * Every RPC of every iot.* service in the descriptor set, as `/pkg.Service/Method`,
 * read with proto-loader: independently of the reader the middleware uses.
 */
function methodsInDescriptor(): string[] {
  const definition = protoLoader.loadFileDescriptorSetFromBuffer(readDescriptorSet(), {});
  const methods: string[] = [];
  for (const [name, value] of Object.entries(definition)) {
    if (!name.startsWith('iot.') || typeof value !== 'object' || 'format' in value) continue;
    for (const method of Object.values(value as Record<string, { path?: string }>)) {
      if (typeof method?.path === 'string') methods.push(method.path);
    }
  }
  return methods.sort();
}

describe('the access rules declared in the protos', () => {
  const methods = methodsInDescriptor();
  const rules: AccessRules = descriptorAccessRules();
  const accessOf = (method: string) => accessRuleOf(method, rules);

  test('the descriptor has the services of signing, device and monitoring', () => {
    const services = new Set(methods.map((m) => m.split('/')[1]));
    for (const s of ['iot.signing.v1.AuthService', 'iot.device.v1.DeviceService', 'iot.monitoring.v1.AlertService']) expect(services.has(s)).toBe(true);
  });

  test('every RPC of every iot.* service declares (iot.common.v1.access), none ACCESS_UNSPECIFIED', () => {
    expect(methodsWithoutAccess(descriptorRegistry(readDescriptorSet()))).toEqual([]);
    expect(methods.filter((m) => accessOf(m) === undefined)).toEqual([]);
  });

  test('the rules name no RPC that does not exist', () => {
    const known = new Set(methods);
    const stale = Object.entries(rules)
      .flatMap(([service, rpcs]) => Object.keys(rpcs).map((rpc) => `/${service}/${rpc}`))
      .filter((m) => !known.has(m));
    expect(stale).toEqual([]);
  });

  test('token exchange is public, key rotation and tenants need a platform admin, users/keys/audit an admin', () => {
    for (const rpc of ['Login', 'Refresh', 'Logout', 'Bootstrap', 'GetJwks']) expect(accessOf(`/iot.signing.v1.AuthService/${rpc}`)).toBe('public');
    expect(accessOf('/iot.signing.v1.AuthService/WhoAmI')).toBe('authenticated');
    expect(accessOf('/iot.signing.v1.AuthService/RotateSigningKey')).toBe('platform_admin');
    expect(accessOf('/iot.signing.v1.TenantService/CreateTenant')).toBe('platform_admin');
    expect(accessOf('/iot.signing.v1.TenantService/GetTenant')).toBe('authenticated');
    expect(accessOf('/iot.signing.v1.UserService/CreateUser')).toBe('admin');
    expect(accessOf('/iot.signing.v1.UserService/ChangePassword')).toBe('authenticated');
    expect(accessOf('/iot.signing.v1.ApiKeyService/CreateApiKey')).toBe('admin');
    expect(accessOf('/iot.signing.v1.AuditService/ListAuditEvents')).toBe('admin');
    expect(accessOf('/iot.device.v1.DeviceService/ListDevices')).toBe('viewer');
    expect(accessOf('/iot.device.v1.TwinService/UpdateDesired')).toBe('operator');
    expect(accessOf('/iot.monitoring.v1.AlertService/CreateAlertRule')).toBe('operator');
    expect(accessOf('/iot.monitoring.v1.TelemetryService/StreamLive')).toBe('viewer');
  });

  test('public methods are only those that exchange credentials or publish keys', () => {
    const publicMethods = methods.filter((m) => accessOf(m) === 'public');
    // ClaimDevice exchanges a per-tenant provisioning key for a device credential (device self-provisioning).
    const expected = [...['Bootstrap', 'GetJwks', 'Login', 'Logout', 'Refresh'].map((rpc) => `/iot.signing.v1.AuthService/${rpc}`), '/iot.device.v1.ProvisioningService/ClaimDevice'];
    expect(publicMethods.sort()).toEqual(expected.sort());
  });

  test("only the device's firmware downloads (chunked and raw) take a device's own credential instead of a user's", () => {
    // Their handlers verify the device credential; no user token or API key works.
    expect(methods.filter((m) => accessOf(m) === 'device_credential').sort()).toEqual(['/iot.device.v1.FirmwareService/DownloadDeviceFirmware', '/iot.device.v1.FirmwareService/GetDeviceFirmwareImage']);
  });
});
