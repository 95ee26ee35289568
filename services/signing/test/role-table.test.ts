import * as protoLoader from '@grpc/proto-loader';
import { accessFor, readDescriptorSet, ROLE_TABLE } from '@iot-mesh/runtime';

/** Every RPC of every iot.* service in the descriptor set, as `/pkg.Service/Method`. */
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

describe('the role table', () => {
  const methods = methodsInDescriptor();

  test('the descriptor has the services of signing, device and monitoring', () => {
    const services = new Set(methods.map((m) => m.split('/')[1]));
    for (const s of ['iot.signing.v1.AuthService', 'iot.device.v1.DeviceService', 'iot.monitoring.v1.AlertService']) expect(services.has(s)).toBe(true);
  });

  test('has an entry for every RPC of every iot.* service', () => {
    const missing = methods.filter((m) => accessFor(m) === undefined);
    expect(missing).toEqual([]);
  });

  test('has no entry for an RPC that does not exist', () => {
    const known = new Set(methods);
    const stale = Object.entries(ROLE_TABLE).flatMap(([service, rpcs]) => Object.keys(rpcs).map((rpc) => `/${service}/${rpc}`)).filter((m) => !known.has(m));
    expect(stale).toEqual([]);
  });

  test('token exchange is public, key rotation and tenants need a platform admin, users/keys/audit an admin', () => {
    for (const rpc of ['Login', 'Refresh', 'Logout', 'Bootstrap', 'GetJwks']) expect(accessFor(`/iot.signing.v1.AuthService/${rpc}`)).toBe('public');
    expect(accessFor('/iot.signing.v1.AuthService/RotateSigningKey')).toBe('platform_admin');
    expect(accessFor('/iot.signing.v1.TenantService/CreateTenant')).toBe('platform_admin');
    expect(accessFor('/iot.signing.v1.UserService/CreateUser')).toBe('admin');
    expect(accessFor('/iot.signing.v1.ApiKeyService/CreateApiKey')).toBe('admin');
    expect(accessFor('/iot.signing.v1.AuditService/ListAuditEvents')).toBe('admin');
    expect(accessFor('/iot.device.v1.DeviceService/ListDevices')).toBe('viewer');
    expect(accessFor('/iot.device.v1.TwinService/UpdateDesired')).toBe('operator');
    expect(accessFor('/iot.monitoring.v1.AlertService/CreateAlertRule')).toBe('operator');
  });

  test('public methods are only those that exchange credentials or publish keys', () => {
    const publicMethods = methods.filter((m) => accessFor(m) === 'public');
    expect(publicMethods.every((m) => m.startsWith('/iot.signing.v1.AuthService/'))).toBe(true);
  });
});
